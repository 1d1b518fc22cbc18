"""Request shapes a reviewer sent through memory turns (above `vm.activate_above`), as
the openai SDK sends them:

- legacy `functions`/`function_call`, `prediction` and an audio answer (`modalities`) run
  passive: no memory tools beside them (OpenAI refuses `functions` with `tools`, and tools
  with `prediction`), and the answer is relayed as the upstream gives it: a
  `function_call` with its finish_reason, audio deltas in a stream (they were dropped:
  the client got an empty stop);
- legacy functions count against the budget as tools do;
- a non-streamed answer keeps its logprobs (they were null);
- a Responses request to a chat upstream keeps its `metadata` (with `store: true`, the
  only way chat takes it).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from proxy.tokens import counter_for_model
from tests.loop.harness import MODEL, has_vm_tools, serve, vm_settings
from tests.loop.history import LOCKER, QUESTION, conversation
from tests.loop.scripted import ScriptedModel, agent

WEATHER = {"name": "get_weather", "description": "The weather in a city. " * 40,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
CALL = {"name": "get_weather", "arguments": '{"city": "Porto"}'}
LOGPROBS = {"content": [{"token": "Sure", "logprob": -0.01, "bytes": [83, 117, 114, 101],
                         "top_logprobs": []}], "refusal": None}


class _Body(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def _sse(chunks: list[dict[str, Any]]) -> httpx.Response:
    data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          stream=_Body(data.encode()))


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
            "model": MODEL, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish}]}


class Upstream:
    """Answers as the request asks: a function_call for `functions`, audio for an audio
    modality, text with logprobs otherwise; records every body."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        stream = body.get("stream") is True
        if "functions" in body:
            if stream:
                return _sse([_chunk({"role": "assistant", "content": None,
                                     "function_call": {"name": "get_weather", "arguments": ""}}),
                             _chunk({"function_call": {"arguments": CALL["arguments"]}}),
                             _chunk({}, "function_call")])
            message: dict[str, Any] = {"role": "assistant", "content": None,
                                       "function_call": CALL}
            return self._completion(message, "function_call")
        if "audio" in (body.get("modalities") or ()):
            if stream:
                return _sse([_chunk({"role": "assistant", "content": None,
                                     "audio": {"id": "audio_1", "transcript": "Hi"}}),
                             _chunk({"audio": {"data": "UklGRg==", "transcript": " there"}}),
                             _chunk({}, "stop")])
            message = {"role": "assistant", "content": None,
                       "audio": {"id": "audio_1", "data": "UklGRg==", "transcript": "Hi there",
                                 "expires_at": 1}}
            return self._completion(message, "stop")
        return self._completion({"role": "assistant", "content": "Sure."}, "stop",
                                logprobs=LOGPROBS if body.get("logprobs") else None)

    @staticmethod
    def _completion(message: dict[str, Any], finish: str,
                    logprobs: Any = None) -> httpx.Response:
        return httpx.Response(200, json={
            "id": "chatcmpl-u", "object": "chat.completion", "created": 1, "model": MODEL,
            "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}})


def _long(question: str = QUESTION) -> list[dict[str, Any]]:
    return [*conversation(120), {"role": "user", "content": question}]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_legacy_functions_run_passive_and_get_their_function_call(stream: bool) -> None:
    upstream = Upstream()
    async with serve(upstream) as proxy:
        raw = await proxy.raw_chat({"model": MODEL, "messages": _long("Weather in Porto?"),
                                    "functions": [WEATHER], "function_call": "auto",
                                    "stream": stream})
        assert raw.status_code == 200
        assert raw.headers["x-vm-session"]  # a memory turn, not a pass-through
    (sent,) = upstream.requests
    assert sent["functions"] == [WEATHER] and "tools" not in sent and not has_vm_tools(sent)
    assert sent["function_call"] == "auto"
    assert len(sent["messages"]) < len(_long())  # packed
    if not stream:
        choice = raw.json()["choices"][0]
        assert choice["message"]["function_call"] == CALL
        assert choice["finish_reason"] == "function_call"
    else:
        events = [json.loads(line[6:]) for line in raw.text.splitlines()
                  if line.startswith("data: {")]
        pieces = [e["choices"][0]["delta"].get("function_call") for e in events]
        assert "".join(p.get("arguments", "") for p in pieces if p) == CALL["arguments"]
        assert events[-1]["choices"][0]["finish_reason"] == "function_call"


async def test_legacy_functions_count_against_the_budget() -> None:
    """A large legacy schema is counted as tools are: the packed prompt leaves room for it
    (it used to count as nothing, so prompt + functions could pass the budget)."""
    upstream = Upstream()
    functions = [dict(WEATHER, name=f"tool_{n}") for n in range(6)]
    settings = vm_settings()
    async with serve(upstream, settings) as proxy:
        await proxy.raw_chat({"model": MODEL, "messages": _long(), "functions": functions})
    (sent,) = upstream.requests
    cost = counter_for_model(MODEL).request(sent) + int(sent.get("max_tokens") or 0)
    assert counter_for_model(MODEL).request({"messages": [], "functions": functions}) > 1000
    assert cost <= settings.vm.context_budget


async def test_prediction_runs_without_memory_tools() -> None:
    upstream = Upstream()
    prediction = {"type": "content", "content": "def add(a, b):\n    return a + b\n"}
    async with serve(upstream) as proxy:
        raw = await proxy.raw_chat({"model": MODEL, "messages": _long("Rename add to plus."),
                                    "prediction": prediction})
        assert raw.status_code == 200
    (sent,) = upstream.requests
    assert sent["prediction"] == prediction and not has_vm_tools(sent)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_an_audio_answer_reaches_the_client(stream: bool) -> None:
    upstream = Upstream()
    async with serve(upstream) as proxy:
        raw = await proxy.raw_chat({
            "model": MODEL, "messages": _long(), "modalities": ["text", "audio"],
            "audio": {"voice": "alloy", "format": "wav"}, "stream": stream})
        assert raw.status_code == 200
    (sent,) = upstream.requests
    assert sent["audio"] == {"voice": "alloy", "format": "wav"} and not has_vm_tools(sent)
    if not stream:
        assert raw.json()["choices"][0]["message"]["audio"]["transcript"] == "Hi there"
    else:
        events = [json.loads(line[6:]) for line in raw.text.splitlines()
                  if line.startswith("data: {")]
        audio = [e["choices"][0]["delta"].get("audio") for e in events]
        assert "".join(a.get("transcript", "") for a in audio if a) == "Hi there"


async def test_a_memory_answer_keeps_its_logprobs() -> None:
    upstream = Upstream()
    async with serve(upstream) as proxy:
        answer = await proxy.client.chat.completions.create(
            model=MODEL, messages=_long(), logprobs=True, top_logprobs=0)  # type: ignore[arg-type]
    assert len(upstream.requests) == 1 and has_vm_tools(upstream.requests[0])
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [t.token for t in logprobs.content] == ["Sure"]


async def test_responses_metadata_reaches_a_chat_upstream() -> None:
    model = ScriptedModel(agent(LOCKER))
    async with serve(model, vm_settings(responses="chat")) as proxy:
        await proxy.client.responses.create(model=MODEL, input="Hello there!", store=True,
                                            metadata={"app": "shapes"})
        await proxy.client.responses.create(model=MODEL, input="Hello there!",
                                            metadata={"app": "shapes"})
    # Chat takes metadata with `store: true` only.
    assert model.requests[0]["metadata"] == {"app": "shapes"}
    assert "metadata" not in model.requests[1]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_function_call_answer_is_stored_with_its_call(stream: bool) -> None:
    """The next turn of a session sends the answer back upstream with its function_call
    (stored as `content: null` alone, it was an empty assistant message OpenAI refuses)."""
    upstream = Upstream()
    session = {"x-vm-session": f"functions-{stream}"}
    async with serve(upstream) as proxy:
        first = await proxy.raw_chat({"model": MODEL, "messages": _long("Weather in Porto?"),
                                      "functions": [WEATHER], "stream": stream}, session)
        assert first.status_code == 200
        result = {"role": "function", "name": "get_weather", "content": "Sunny, 24 C"}
        second = await proxy.raw_chat({"model": MODEL, "messages": [result],
                                       "functions": [WEATHER]}, session)
        assert second.status_code == 200
    sent = upstream.requests[-1]["messages"]
    at = next(i for i, m in enumerate(sent) if m.get("role") == "function")
    assert sent[at - 1] == {"role": "assistant", "content": None, "function_call": CALL}


async def test_an_audio_answer_is_stored_with_its_id() -> None:
    upstream = Upstream()
    session = {"x-vm-session": "audio"}
    async with serve(upstream, vm_settings(pin_last_turns=2)) as proxy:
        for question in ("Say hi.", "And again?"):
            messages = _long(question) if question == "Say hi." else [
                {"role": "user", "content": question}]
            raw = await proxy.raw_chat({"model": MODEL, "messages": messages,
                                        "modalities": ["text", "audio"],
                                        "audio": {"voice": "alloy", "format": "wav"}}, session)
            assert raw.status_code == 200
    sent = upstream.requests[-1]["messages"]
    assert {"role": "assistant", "content": None, "audio": {"id": "audio_1"}} in sent


@pytest.mark.parametrize("shape", [{"functions": []}, {"functions": None}, {"prediction": None},
                                   {"modalities": ["text"]}, {"n": 1}],
                         ids=["no functions", "null functions", "null prediction", "text",
                              "one choice"])
async def test_empty_or_null_fields_keep_the_memory_tools(shape: dict[str, Any]) -> None:
    upstream = Upstream()
    async with serve(upstream) as proxy:
        raw = await proxy.raw_chat({"model": MODEL, "messages": _long(), **shape})
        assert raw.status_code == 200
    assert has_vm_tools(upstream.requests[0])
