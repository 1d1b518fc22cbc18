"""Token counting: encodings from package data, and request counts against recorded usage."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy import tokens
from proxy.tokens import (
    CL100K,
    ENCODINGS,
    O200K,
    TokenizerDataError,
    chat_format_for_model,
    counter_for_model,
    encoding_name_for_model,
    get_encoding,
    image_tiles,
    load_ranks,
)
from tests.upstream.recordings import RECORDED

# Models billed with OpenAI's own tokenizers and chat format. Everything else in the
# recordings runs another tokenizer (Llama, Qwen, GLM, DeepSeek, Claude, Gemini, Kimi, ...) or
# OpenAI's open-weight gpt-oss in the harmony format served by third parties, whose hosts
# count reasoning and tool framing their own way: those are excluded, with that reason.
OPENAI_MODEL = re.compile(r"^(openai/)?(gpt-3\.5|gpt-4|gpt-5|o\d)(?!.*oss)")


@dataclass(frozen=True)
class Exchange:
    name: str
    model: str
    request: dict[str, Any]
    prompt_tokens: int


def _body(part: dict[str, Any]) -> Any:
    if "parsed_body" in part:
        return part["parsed_body"]
    raw = part.get("body")
    if isinstance(raw, dict):
        raw = raw.get("string")
    if isinstance(raw, bytes):
        try:
            raw = gzip.decompress(raw)
        except OSError:
            pass
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, str) and raw.lstrip().startswith("{"):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _usage(body: Any) -> tuple[dict[str, Any] | None, str | None]:
    if isinstance(body, dict):
        return body.get("usage"), body.get("model")
    usage = model = None
    for line in str(body or "").splitlines():
        data = line.strip().removeprefix("data:").strip()
        if not data.startswith("{"):
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        usage = chunk.get("usage") or usage
        model = chunk.get("model") or model
    return usage, model


def _exchanges() -> list[Exchange]:
    if not RECORDED.is_dir():
        return []
    yaml = pytest.importorskip("yaml")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found: list[Exchange] = []
    for path in sorted(RECORDED.glob("*/*.yaml")):
        if path.parent.name == "spec":
            continue
        doc = yaml.load(path.read_text(), Loader=loader)
        for i, interaction in enumerate(doc.get("interactions") or []):
            request = _body(interaction["request"])
            if not isinstance(request, dict) or "messages" not in request:
                continue
            usage, model = _usage(_body(interaction["response"]))
            if usage and usage.get("prompt_tokens") and model:
                name = f"{path.parent.name}/{path.stem} #{i}"
                found.append(Exchange(name, model, request, int(usage["prompt_tokens"])))
    return found


EXCHANGES = _exchanges()
OPENAI = [e for e in EXCHANGES if OPENAI_MODEL.match(e.model)]
EXCLUDED = [e for e in EXCHANGES if not OPENAI_MODEL.match(e.model)]


def _require_recordings() -> None:
    if not RECORDED.is_dir():
        pytest.skip(f"recorded exchanges not present at {RECORDED}")


@pytest.mark.parametrize("exchange", OPENAI, ids=[e.name for e in OPENAI])
def test_recorded_prompt_tokens_within_two_percent(exchange: Exchange) -> None:
    counted = counter_for_model(exchange.model).request(exchange.request)
    error = abs(counted - exchange.prompt_tokens) / exchange.prompt_tokens
    assert error <= 0.02, (exchange.name, exchange.model, counted, exchange.prompt_tokens)


def test_recordings_cover_tools_calls_and_several_models() -> None:
    _require_recordings()
    assert len(OPENAI) >= 30
    assert any(e.request.get("tools") for e in OPENAI)
    assert any(m.get("tool_calls") for e in OPENAI for m in e.request["messages"])
    families = {re.sub(r"-\d{4}-\d\d-\d\d$", "", e.model) for e in OPENAI}
    assert {"gpt-4o", "gpt-4o-mini"} <= families and len(families) >= 4
    # Excluded models are named so a reader can see why: none of them is OpenAI's tokenizer.
    assert all(not OPENAI_MODEL.match(e.model) for e in EXCLUDED)


def test_patterns_and_special_tokens_match_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    public = pytest.importorskip("tiktoken_ext.openai_public")
    # Keep tiktoken's constructors from touching the network: we only want their constants.
    monkeypatch.setattr(public, "load_tiktoken_bpe", lambda *a, **k: {})
    for name, make in ((O200K, public.o200k_base), (CL100K, public.cl100k_base)):
        theirs = make()
        assert ENCODINGS[name].pattern == theirs["pat_str"]
        assert dict(ENCODINGS[name].special_tokens) == theirs["special_tokens"]


def test_rank_files_are_verified(tmp_path: Path) -> None:
    spec = ENCODINGS[CL100K]
    shutil.copy(tokens.DATA_DIR / spec.file, tmp_path / spec.file)
    assert len(load_ranks(spec, tmp_path)) == 100256
    with open(tmp_path / spec.file, "ab") as file:
        file.write(b"Zm9v 100300\n")
    with pytest.raises(TokenizerDataError, match="sha256"):
        load_ranks(spec, tmp_path)
    (tmp_path / spec.file).unlink()
    with pytest.raises(TokenizerDataError):
        load_ranks(spec, tmp_path)
    assert hashlib.sha256((tokens.DATA_DIR / spec.file).read_bytes()).hexdigest() == spec.sha256


def test_encodings_round_trip_known_tokens() -> None:
    o200k = get_encoding(O200K)
    assert o200k.encode_ordinary("hello world") == [24912, 2375]
    assert o200k.decode(o200k.encode_ordinary("Lisbon, 2024 — ok")) == "Lisbon, 2024 — ok"
    assert get_encoding(CL100K).encode_ordinary("hello world") == [15339, 1917]
    assert get_encoding(O200K) is o200k


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", O200K),
        ("gpt-4o-mini-2024-07-18", O200K),
        ("gpt-4.1-nano", O200K),
        ("o3-mini", O200K),
        ("gpt-5", O200K),
        ("openai/o3", O200K),
        ("some-unknown-model", O200K),
        (None, O200K),
        ("gpt-4", CL100K),
        ("gpt-4-turbo-2024-04-09", CL100K),
        ("gpt-4-0613", CL100K),
        ("gpt-3.5-turbo", CL100K),
        ("text-embedding-3-small", CL100K),
    ],
)
def test_model_to_encoding(model: str | None, encoding: str) -> None:
    assert encoding_name_for_model(model) == encoding


def test_message_overheads() -> None:
    counter = counter_for_model("gpt-4o")
    text = counter.text("Tell me a joke.")
    assert counter.messages([{"role": "user", "content": "Tell me a joke."}]) == 3 + 1 + text + 3
    named = counter.message({"role": "user", "name": "ana", "content": "hi"})
    assert named == counter.message({"role": "user", "content": "hi"}) + 1 + counter.text("ana")
    parts = [{"type": "text", "text": "Tell me"}, {"type": "text", "text": " a joke."}]
    assert counter.content(parts) == counter.text("Tell me") + counter.text(" a joke.")
    assert chat_format_for_model("gpt-5-nano").reply_primer == 2


def test_tool_result_is_billed_with_its_function_name() -> None:
    counter = counter_for_model("gpt-4o")
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather_forecast", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    fmt = counter.format
    expected = (
        fmt.reply_primer
        + counter.message(messages[0])
        + fmt.tool_call_message
        + fmt.tool_call
        + counter.text("get_weather_forecast")
        + counter.text('{"city":"Paris"}')
        + fmt.tool_result
        + counter.text("get_weather_forecast")
        + counter.text("sunny")
    )
    assert counter.messages(messages) == expected
    two = {**messages[1], "tool_calls": [call, {**call, "id": "c2"}]}
    assert (
        counter.message(two)
        == counter.message(messages[1])
        + fmt.tool_call
        + counter.text("get_weather_forecast")
        + counter.text('{"city":"Paris"}')
        + fmt.parallel_calls
    )


def test_tools_add_rendered_schema_tokens() -> None:
    counter = counter_for_model("gpt-4o")
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Find a thing.",
            "parameters": {
                "type": "object",
                "properties": {
                    "q": {"type": "string", "description": "What to find."},
                    "mode": {"type": "string", "enum": ["fast", "full"], "default": "fast"},
                },
                "required": ["q"],
            },
        },
    }
    text = tokens.render_tools([tool])
    assert '// What to find.\nq: string,\nmode?: "fast" | "full", // default: "fast"' in text
    assert counter.tools([tool], has_system=False) == counter.text(text) + 3
    assert counter.tools([tool], has_system=True) == counter.text(text) + 1
    assert counter.tools([], has_system=False) == 0
    body = {"messages": [{"role": "user", "content": "x"}], "tools": [tool]}
    assert counter.request(body) == counter.messages(body["messages"]) + counter.text(text) + 3


def _png(width: int, height: int) -> str:
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    header += struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    header += struct.pack(">I", zlib.crc32(header[12:]))
    return "data:image/png;base64," + base64.b64encode(header + b"\0" * 40).decode()


def _jpeg(width: int, height: int) -> str:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + b"\1\1\0\0\1\0\1\0\0"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\1\x11\0"
    return (
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8" + app0 + sof + b"\0" * 8).decode()
    )


def test_image_costs_follow_tile_math() -> None:
    counter = counter_for_model("gpt-4o")
    assert counter.image("https://example.com/cat.png", "low") == 85
    # Size unknown: assumed 1024x1024 -> 768x768 -> 4 tiles.
    assert counter.image("https://example.com/cat.png", "high") == 85 + 4 * 170
    # OpenAI's documented example: 2048x4096 at high detail costs 1105.
    assert counter.image(_png(2048, 4096), "high") == 1105
    assert counter.image(_jpeg(2048, 4096), "auto") == 1105
    assert image_tiles(512, 512) == 1 and image_tiles(4096, 8192) == 6
    mini = counter_for_model("gpt-4o-mini")
    assert mini.image("https://example.com/x.png", "low") == 2833
    part = {"type": "image_url", "image_url": {"url": _png(100, 100), "detail": "high"}}
    assert counter.content([{"type": "text", "text": "see"}, part]) == counter.text("see") + 255
    assert tokens.image_size("data:image/png;base64,!!!") is None


def test_special_token_text_in_content_is_plain_text() -> None:
    counter = counter_for_model("gpt-4o")
    assert counter.text("<|endoftext|>") > 1
