"""Every recorded response, streamed or not, through the accumulator."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from proxy.upstream.completion import assemble_response

from .helpers import assemble_stream
from .recordings import Recording, by_name, recordings, streamed


def reference(body: bytes) -> dict[str, Any]:
    """A deliberately naive reconstruction: index-keyed, first id/name wins, args joined."""
    content: str | None = None
    calls: dict[int, dict[str, Any]] = {}
    usage = None
    for line in body.split(b"\n"):
        if not line.startswith(b"data: {"):
            continue
        obj = json.loads(line[6:])
        usage = obj.get("usage") or usage
        for choice in obj.get("choices") or []:
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                content = (content or "") + delta["content"]
            for frag in delta.get("tool_calls") or []:
                call = calls.setdefault(frag["index"], {"id": None, "name": None, "args": ""})
                function = frag.get("function") or {}
                call["id"] = call["id"] or frag.get("id")
                call["name"] = call["name"] or function.get("name")
                call["args"] += function.get("arguments") or ""
    tool_calls = [(c["id"], c["name"], c["args"] or "{}") for _, c in sorted(calls.items())]
    if tool_calls and not content:
        content = None
    return {"content": content, "tool_calls": tool_calls,
            "total": usage["total_tokens"] if usage else None}


@pytest.mark.parametrize("rec", streamed(), ids=lambda r: r.name)
def test_stream_matches_naive_reconstruction(rec: Recording) -> None:
    message, _ = assemble_stream(rec.body)
    expected = reference(rec.body)
    assert message.content == expected["content"]
    got = [(c["id"], c["function"]["name"], c["function"]["arguments"])
           for c in message.tool_calls]
    assert got == expected["tool_calls"]
    total = message.usage["total_tokens"] if message.usage else None
    assert total == expected["total"]
    for call in message.tool_calls:
        json.loads(call["function"]["arguments"])  # every recorded call is complete JSON
    if message.tool_calls:
        assert message.finish_reason == "tool_calls"


def one(prefix: str) -> Recording:
    return by_name(prefix)[0]


def test_kimi_variant_a_id_and_name_repeated_no_finish() -> None:
    message, done = assemble_stream(one("simonw-llm/test_tools_streaming__test_tools_streaming"
                                        "_variant_a.yaml #0").body)
    assert done
    assert message.tool_calls == [{"id": "0", "type": "function",
                                   "function": {"name": "llm_version", "arguments": "{}"}}]
    assert message.upstream_finish_reason is None
    assert message.finish_reason == "tool_calls"
    assert message.content is None
    assert message.usage is not None and message.usage["total_tokens"] == 74
    assert message.model == "moonshotai/kimi-k2"


def test_kimi_variant_b_whole_call_in_one_delta() -> None:
    message, _ = assemble_stream(one("simonw-llm/test_tools_streaming__test_tools_streaming"
                                     "_variant_b.yaml #0").body)
    assert [(c["id"], c["function"]) for c in message.tool_calls] == [
        ("0", {"name": "llm_version", "arguments": "{}"})]
    assert message.finish_reason == "tool_calls"


def test_kimi_variant_c_header_without_arguments_key() -> None:
    message, _ = assemble_stream(one("simonw-llm/test_tools_streaming__test_tools_streaming"
                                     "_variant_c.yaml #0").body)
    assert message.tool_calls == [{"id": "llm_version:0", "type": "function",
                                   "function": {"name": "llm_version", "arguments": "{}"}}]
    assert message.upstream_finish_reason == "tool_calls"
    assert message.usage is not None and message.usage["total_tokens"] == 68


def test_kimi_variant_d_arguments_null() -> None:
    message, _ = assemble_stream(one("simonw-llm/test_tools_streaming__test_tools_streaming"
                                     "_variant_d.yaml #0").body)
    assert message.tool_calls == [{"id": "0", "type": "function",
                                   "function": {"name": "llm_version", "arguments": "{}"}}]
    assert message.usage is not None and message.usage["total_tokens"] == 74


def test_groq_error_event_mid_stream() -> None:
    message, done = assemble_stream(
        one("pydantic-ai/test_groq__test_tool_use_failed_error_streaming.yaml #0").body)
    assert not done
    assert message.error is not None
    assert message.error["code"] == "tool_use_failed"
    assert message.error["type"] == "invalid_request_error"
    assert message.error["message"].startswith("Tool call validation failed")
    assert message.error["status_code"] == 400
    assert message.tool_calls == []
    assert message.finish_reason is None
    assert message.reasoning_key == "reasoning"
    assert message.reasoning is not None and message.reasoning.startswith("We need to call")


def test_groq_usage_in_x_groq_not_doubled() -> None:
    message, _ = assemble_stream(
        one("pydantic-ai/test_groq__test_tool_use_failed_error_streaming.yaml #1").body)
    assert message.usage is not None and message.usage["total_tokens"] == 353
    assert message.tool_calls[0]["function"] == {"name": "get_something_by_name",
                                                  "arguments": '{"name":"example"}'}


def test_openrouter_error_inside_chunk() -> None:
    message, done = assemble_stream(
        one("pydantic-ai/test_openrouter__test_openrouter_stream_error.yaml #0").body)
    assert done
    assert message.error == {"code": "400", "message": "Token limit reached",
                             "type": "invalid_request_error", "param": None}
    assert message.upstream_finish_reason == "length"
    assert message.finish_reason == "length"
    assert message.reasoning == "We need to respond to a greeting. The user"
    assert message.usage is not None and message.usage["total_tokens"] == 53
    details = message.message_extra["reasoning_details"]
    assert details == [{"type": "reasoning.text", "index": 0, "format": None,
                        "text": "We need to respond to a greeting. The user"}]


def test_azure_placeholder_first_chunk() -> None:
    message, _ = assemble_stream(one("crewai/llms__TestAzureToolCallStreaming").body)
    assert message.id == "chatcmpl-D0xlayLMAku0tnv2zs461w2JwoFVC"
    assert message.model == "gpt-4o-mini-2024-07-18"
    assert message.created == 1769122114
    assert message.tool_calls == [{
        "id": "call_A6XpaIHt5uNwiDqVxyvKoXMa", "type": "function",
        "function": {"name": "get_current_temperature", "arguments": '{"city":"San Francisco"}'},
    }]
    assert message.usage is not None and message.usage["total_tokens"] == 83
    text, _ = assemble_stream(one("crewai/llms__azure__test_azure_streaming_completion").body)
    assert text.content == "Hello! How can I assist you today?"
    assert text.finish_reason == "stop"


def test_deepseek_usage_on_finish_chunk() -> None:
    message, _ = assemble_stream(
        one("openllmetry/deepseek__test_streaming_with_api_usage_capture").body)
    assert message.usage == {"prompt_tokens": 12, "completion_tokens": 89, "total_tokens": 101,
                             "prompt_tokens_details": {"cached_tokens": 0},
                             "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 12}
    assert message.content is not None and message.content.endswith("chuckle! 😄")


def test_deepseek_reasoning_content_kept_apart() -> None:
    message, _ = assemble_stream(one("pydantic-ai/test_deepseek__test_deepseek_model_thinking"
                                     "_stream").body)
    assert message.content == "Hello there! 😊 How can I help you today?"
    assert message.reasoning_key == "reasoning_content"
    assert message.reasoning is not None and message.reasoning.startswith("Hmm, the user")
    assert message.to_message()["reasoning_content"] == message.reasoning


def test_parallel_openai_calls() -> None:
    message, _ = assemble_stream(
        one("openllmetry/openai__test_open_ai_function_calls_tools_streaming_parallel").body)
    assert [(c["id"], json.loads(c["function"]["arguments"])) for c in message.tool_calls] == [
        ("call_cCPjAyfwTzboEKjVlqFrArNF", {"location": "San Francisco"}),
        ("call_Zi4He1Ns0mozwT6f85nW1BOW", {"location": "Boston"}),
    ]
    assert message.usage is None


def test_temporal_53_fragments() -> None:
    rec = one("pydantic-ai/test_temporal__test_complex_agent_run.yaml #2")
    fragments = rec.body.count(b'"function":{"arguments":')
    assert fragments >= 53
    message, _ = assemble_stream(rec.body)
    (call,) = message.tool_calls
    assert call["id"] == "call_CCGIWaMeYWmxOQ91orkmTvzn"
    assert json.loads(call["function"]["arguments"]) == {"answers": [
        {"label": "Capital", "answer": "The capital of Mexico is Mexico City."},
        {"label": "Weather", "answer": "The weather in Mexico City is currently sunny."},
        {"label": "Product Name", "answer": "The product name is Pydantic AI."},
    ]}
    assert message.usage is not None and message.usage["total_tokens"] == 510


def test_snowflake_no_finish_reason_and_empty_id() -> None:
    message, _ = assemble_stream(one("pydantic-ai/test_snowflake__test_snowflake_model_"
                                     "streaming").body)
    assert message.content == "4"
    assert message.upstream_finish_reason is None
    assert message.finish_reason == "stop"
    assert message.id is None


# --- non-stream bodies ----------------------------------------------------------------------


def _nonstream_ok() -> list[Recording]:
    return [r for r in recordings() if not r.is_stream and r.status == 200]


@pytest.mark.parametrize("rec", _nonstream_ok(), ids=lambda r: r.name)
def test_nonstream_matches_message(rec: Recording) -> None:
    body = orjson.loads(rec.body)
    message = assemble_response(body)
    choices = body.get("choices")
    if not choices:
        assert message.error is not None and message.error["code"] == "invalid_response"
        return
    raw = choices[0]["message"]
    raw_calls = raw.get("tool_calls") or []
    assert [c["function"]["name"] for c in message.tool_calls] == [
        c["function"]["name"] for c in raw_calls]
    assert [c["function"]["arguments"] for c in message.tool_calls] == [
        c["function"]["arguments"] or "{}" for c in raw_calls]
    assert all(c["id"] for c in message.tool_calls)
    assert len({c["id"] for c in message.tool_calls}) == len(message.tool_calls)
    expected_content = raw.get("content")
    if raw_calls and not expected_content:
        expected_content = None
    assert message.content == expected_content
    assert message.finish_reason == ("tool_calls" if raw_calls else
                                     "stop" if choices[0].get("finish_reason") in
                                     (None, "", "stop", "eos") else choices[0]["finish_reason"])
    assert message.usage == body.get("usage")


def test_gemini_empty_id_is_synthesised_stably() -> None:
    body = orjson.loads(one("pydantic-ai/test_openai__test_compatible_api_with_tool_calls_"
                            "without_id.yaml #0").body)
    first = assemble_response(body, id_salt="turn-1")
    again = assemble_response(body, id_salt="turn-1")
    other = assemble_response(body, id_salt="turn-2")
    (call,) = first.tool_calls
    assert call["id"].startswith("call_") and len(call["id"]) == 29
    assert again.tool_calls[0]["id"] == call["id"]
    assert other.tool_calls[0]["id"] != call["id"]
    assert first.id_map == {call["id"]: ""}
    assert first.finish_reason == "tool_calls"
    # Gemini's thought signature is replayed upstream with the assistant turn
    assert "extra_content" in first.to_message()


def test_together_eos_is_stop() -> None:
    message = assemble_response(orjson.loads(one("openllmetry/together").body))
    assert message.upstream_finish_reason == "eos"
    assert message.finish_reason == "stop"


def test_snowflake_nonstream_tool_call_without_finish() -> None:
    message = assemble_response(orjson.loads(one("pydantic-ai/test_snowflake__test_snowflake_"
                                                 "tool_calling.yaml #0").body))
    assert message.finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls[0]["id"] == "toolu_bdrk_015BgHUFs4HS1TVWWwNRNxip"
