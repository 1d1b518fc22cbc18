from __future__ import annotations

import orjson
import pytest

from proxy.upstream.sse import SSEDecoder
from proxy.upstream.usage import add_usage, extract_usage, openai_usage, sum_usage

from .recordings import by_name

OPENAI_USAGE = {
    "prompt_tokens": 364,
    "completion_tokens": 40,
    "total_tokens": 404,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def test_top_level_usage_chunk() -> None:
    assert extract_usage({"choices": [], "usage": OPENAI_USAGE}) is OPENAI_USAGE


def test_usage_null_is_none() -> None:
    assert extract_usage({"choices": [{"index": 0, "delta": {}}], "usage": None}) is None
    assert extract_usage({"choices": []}) is None
    assert extract_usage({"usage": {}}) is None


def test_usage_on_chunk_with_choices() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 12, "completion_tokens": 89, "total_tokens": 101}}
    assert extract_usage(chunk) == {"prompt_tokens": 12, "completion_tokens": 89,
                                    "total_tokens": 101}


def test_x_groq_usage_and_precedence() -> None:
    groq = {"prompt_tokens": 304, "completion_tokens": 49, "total_tokens": 353}
    assert extract_usage({"choices": [], "x_groq": {"id": "req", "usage": groq}}) == groq
    other = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert extract_usage({"usage": other, "x_groq": {"usage": groq}}) == other
    assert extract_usage({"usage": None, "x_groq": {"usage": groq}}) == groq


def test_per_choice_usage() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert extract_usage({"choices": [{"index": 0, "usage": usage}]}) == usage


def test_add_usage_sums_recursively_and_keeps_unknown_keys() -> None:
    a = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12,
         "prompt_tokens_details": {"cached_tokens": 4}, "cost": 0.5, "is_byok": False,
         "prompt_cache_hit_tokens": 4}
    b = {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23,
         "prompt_tokens_details": {"cached_tokens": 1, "audio_tokens": 2},
         "completion_tokens_details": {"reasoning_tokens": 7}, "cost": 0.25, "is_byok": True}
    total = add_usage(a, b)
    assert total == {
        "prompt_tokens": 30,
        "completion_tokens": 5,
        "total_tokens": 35,
        "prompt_tokens_details": {"cached_tokens": 5, "audio_tokens": 2},
        "cost": 0.75,
        "is_byok": False,
        "prompt_cache_hit_tokens": 4,
        "completion_tokens_details": {"reasoning_tokens": 7},
    }
    # inputs untouched
    assert a["prompt_tokens_details"] == {"cached_tokens": 4}
    assert b["prompt_tokens"] == 20


def test_add_usage_none_and_null_details() -> None:
    assert add_usage(None, None) is None
    hf = {"prompt_tokens": 40, "completion_tokens": 2, "total_tokens": 42,
          "prompt_tokens_details": None}
    assert add_usage(hf, None) == hf
    assert add_usage(None, hf) is not hf
    summed = add_usage(hf, {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2,
                            "prompt_tokens_details": {"cached_tokens": 1}})
    assert summed is not None
    assert summed["prompt_tokens_details"] == {"cached_tokens": 1}
    assert summed["total_tokens"] == 44


def test_missing_total_is_filled_before_summing() -> None:
    total = add_usage({"prompt_tokens": 3, "completion_tokens": 4},
                      {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})
    assert total == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}


def test_sum_usage_over_iterations() -> None:
    parts = [OPENAI_USAGE, None, OPENAI_USAGE]
    total = sum_usage(parts)
    assert total is not None
    assert total["total_tokens"] == 808
    assert total["completion_tokens_details"]["reasoning_tokens"] == 0
    assert sum_usage([]) is None


def test_openai_key_order() -> None:
    shuffled = {"completion_tokens_details": {}, "total_tokens": 3, "cost": 1,
                "prompt_tokens": 1, "completion_tokens": 2}
    assert list(openai_usage(shuffled)) == [
        "prompt_tokens", "completion_tokens", "total_tokens", "completion_tokens_details", "cost"
    ]


def _chunks(prefix: str) -> list[dict[str, object]]:
    rec = by_name(prefix)[0]
    decoder = SSEDecoder()
    events = decoder.feed(rec.body) + decoder.flush()
    return [orjson.loads(e.data) for e in events if e.data.startswith("{")]


@pytest.mark.parametrize(
    ("prefix", "expected_total", "where"),
    [
        ("pydantic-ai/test_temporal__test_complex_agent_run.yaml #0", 404, -1),
        ("openllmetry/deepseek__test_streaming_with_api_usage_capture.yaml #0", 101, -1),
        ("pydantic-ai/test_groq__test_tool_use_failed_error_streaming.yaml #1", 353, -1),
        ("simonw-llm/test_tools_streaming__test_tools_streaming_variant_a.yaml #0", 74, -1),
    ],
)
def test_recorded_usage_placements(prefix: str, expected_total: int, where: int) -> None:
    chunks = _chunks(prefix)
    found = [u for u in (extract_usage(c) for c in chunks) if u is not None]
    assert len(found) == 1
    assert found[0]["total_tokens"] == expected_total
    assert extract_usage(chunks[where]) is found[0]
