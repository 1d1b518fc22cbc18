"""The edges of a Responses memory turn: errors before and during the stream, strict mode's
citations taken out of streamed text (the done events saying what was shown), built-in
tools (sent on to a native upstream; a chat upstream cannot run them, so such a request is
relayed as it is), a `tool_choice` chat has no equal for (sent as the client sent it), and
`X-VM-Mode: off`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.loop.harness import MODEL, parse_sse, serve, vm_settings
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import Answer, Call, Calls, Fail, ScriptedModel, StreamError, agent
from tests.loop.scripted_responses import ResponsesModel
from tests.loop.test_responses import as_responses

HEADERS = {"authorization": "Bearer sk-test"}


def _request(**extra: Any) -> dict[str, Any]:
    instructions, items = as_responses(conversation(120))
    return {"model": MODEL, "instructions": instructions,
            "input": [*items, {"role": "user", "content": QUESTION}], **extra}


@pytest.mark.parametrize("iteration", [0, 1], ids=["first-call", "after-a-search"])
async def test_an_error_mid_stream_ends_the_stream(iteration: int) -> None:
    model = ResponsesModel(agent(LOCKER))
    for _ in range(2):  # the same turn twice: raw, then through the SDK
        if iteration:
            model.queue(Calls([Call("search_pages", {"query": QUESTION})]))
        model.queue(StreamError("Let me th", message="Upstream broke mid-stream."))
    async with serve(model, path="/responses") as proxy:
        raw = await proxy.http.post("/v1/responses", headers=HEADERS,
                                    json=_request(stream=True))
        stream = await proxy.client.responses.create(**_request(stream=True))
        with pytest.raises(openai.APIError) as raised:
            async for _ in stream:
                pass
    assert "Upstream broke mid-stream." in raised.value.message
    events = [e.json for e in parse_sse(raw.text) if e.data is not None]
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["response"]["status"] == "failed"
    assert "response.completed" not in {e["type"] for e in events}


async def test_an_upstream_refusal_keeps_its_status() -> None:
    model = ResponsesModel(agent(LOCKER))
    model.queue(Fail(429, "Slow down.", "rate_limit_error", "rate_limited"),
                Fail(429, "Slow down.", "rate_limit_error", "rate_limited"))
    async with serve(model, path="/responses") as proxy:
        with pytest.raises(openai.RateLimitError):
            await proxy.client.responses.create(**_request())
        with pytest.raises(openai.RateLimitError):
            await proxy.client.responses.create(**_request(stream=True))


async def test_strict_mode_citations_are_taken_out_of_the_stream() -> None:
    cited = f"Your locker code is {LOCKER_CODE} [ref: msg_11]. Anything else?"
    model = ResponsesModel(agent(LOCKER, answer=lambda fact, found: cited))
    async with serve(model, path="/responses") as proxy:
        raw = await proxy.http.post("/v1/responses", headers=HEADERS,
                                    json=_request(stream=True))
        created = await proxy.client.responses.create(**_request())
    shown = f"Your locker code is {LOCKER_CODE}. Anything else?"
    assert created.output_text == shown
    events = [e.json for e in parse_sse(raw.text) if e.data is not None]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == shown
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert done["text"] == shown
    final = events[-1]["response"]["output"][-1]["content"][0]["text"]
    assert final == shown


async def test_builtin_tools_go_to_a_native_upstream() -> None:
    model = ResponsesModel(agent(LOCKER))
    async with serve(model, path="/responses") as proxy:
        response = await proxy.client.responses.create(
            **_request(tools=[{"type": "web_search"}]))
    assert response.output_text == f"Your locker code is {LOCKER_CODE}."
    assert response.tools[0].type == "web_search" and len(response.tools) == 1
    for body in model.requests:
        assert {"type": "web_search"} in body["tools"]


WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.mark.parametrize(("tools", "choice"), [
    ([WEATHER, {"type": "web_search_preview"}],
     {"type": "allowed_tools", "mode": "required",
      "tools": [{"type": "function", "name": "get_weather"}]}),
    ([WEATHER, {"type": "web_search_preview"}], {"type": "web_search_preview"}),
    ([{"type": "file_search", "vector_store_ids": ["vs_1"]}], {"type": "file_search"}),
    ([{"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.deepwiki.com/mcp"}],
     {"type": "mcp", "server_label": "deepwiki"}),
    ([{"type": "custom", "name": "grammar"}], {"type": "custom", "name": "grammar"}),
    ([{"type": "web_search_preview"}], "required"),
], ids=["allowed-tools", "web-search", "file-search", "mcp", "custom", "required-builtin"])
async def test_a_tool_choice_chat_cannot_say_reaches_the_upstream(
    tools: list[dict[str, Any]], choice: Any,
) -> None:
    model = ResponsesModel(lambda reading: Answer("Chosen."))
    async with serve(model, path="/responses") as proxy:
        response = await proxy.client.responses.create(
            **_request(tools=tools, tool_choice=choice))
    assert response.output_text == "Chosen."
    sent = model.requests[0]
    assert "<VM:MANIFEST_JSON>" in json.dumps(sent["input"][0])  # a memory turn
    assert sent["tool_choice"] == choice
    assert [t for t in sent["tools"] if t.get("name") not in ("page_fault", "search_pages")
            ] == tools


async def test_builtin_tools_with_a_chat_upstream_are_relayed() -> None:
    model = ResponsesModel(lambda reading: Answer("Relayed."))
    settings = vm_settings(responses="chat")
    async with serve(model, settings, path="/responses") as proxy:
        response = await proxy.client.responses.create(
            **_request(tools=[{"type": "web_search"}]))
    assert response.output_text == "Relayed." and response.id == "resp_scripted001"
    assert model.requests[0]["input"][-1] == {"role": "user", "content": QUESTION}
    assert len(model.requests[0]["input"]) == 241  # as the client sent it


async def test_mode_off_relays_as_it_is() -> None:
    model = ResponsesModel(lambda reading: Answer("Off."))
    async with serve(model, path="/responses") as proxy:
        raw = await proxy.http.post("/v1/responses", json=_request(),
                                    headers={**HEADERS, "x-vm-mode": "off"})
    assert raw.json()["id"] == "resp_scripted001"
    assert model.requests[0] == _request()
    assert "x-vm-session" not in raw.headers


async def test_a_stream_cut_before_completed_is_an_error_and_not_stored() -> None:
    from tests.loop.scripted import Pieces

    model = ResponsesModel(lambda reading: Answer("Half an answ"))

    async def cut(request: httpx.Request) -> httpx.Response:
        status, headers, events = model.respond(json.loads(request.content))
        assert isinstance(events, list)
        return httpx.Response(status, headers=headers, stream=Pieces(events[:-1]))

    async with serve(cut, path="/responses") as proxy:
        raw = await proxy.http.post("/v1/responses", headers=HEADERS,
                                    json=_request(stream=True))
        conv = await proxy.store.get_conversation(proxy.tenant, raw.headers["x-vm-session"])
    events = [e.json for e in parse_sse(raw.text) if e.data is not None]
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["error"]["code"] == "upstream_stream_incomplete"
    assert conv is not None and conv.length == 242  # instructions, history, the question


class _BreaksOff(httpx.AsyncByteStream):
    """Some of a stream's events, then the connection fails (`error`)."""

    def __init__(self, events: list[bytes], error: Exception) -> None:
        self.events = events
        self.error = error

    async def __aiter__(self) -> Any:
        for event in self.events:
            yield event
        raise self.error

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("error", [httpx.ReadError("connection reset by peer"),
                                   httpx.ReadTimeout("timed out")], ids=["reset", "timeout"])
async def test_a_short_relayed_stream_broken_off_ends_as_a_failed_response(
    error: Exception,
) -> None:
    model = ResponsesModel(lambda reading: Answer("A fairly long answer, cut short."))

    async def breaks_off(request: httpx.Request) -> httpx.Response:
        status, headers, events = model.respond(json.loads(request.content))
        assert isinstance(events, list)
        return httpx.Response(status, headers=headers, stream=_BreaksOff(events[:5], error))

    request = {"model": MODEL, "instructions": "Be brief.", "input": "hi", "stream": True}
    async with serve(breaks_off, path="/responses") as proxy:
        raw = await proxy.http.post("/v1/responses", headers=HEADERS, json=request)
        stream = await proxy.client.responses.create(**request)
        with pytest.raises(openai.APIError) as raised:
            async for _ in stream:
                pass
    assert raised.value.message.startswith("The upstream at http://upstream.test/v1")
    events = [e for e in parse_sse(raw.text) if e.data is not None]
    data = [e.json for e in events]
    assert [e.event for e in events] == [d["type"] for d in data]
    assert [d["type"] for d in data][:2] == ["response.created", "response.in_progress"]
    assert [d["type"] for d in data][-2:] == ["error", "response.failed"]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))  # 5 relayed, 2
    assert data[-2]["error"]["code"] == "upstream_stream_error"
    assert data[-2]["error"]["message"] == raised.value.message
    assert set(data[-2]) == {"type", "sequence_number", "error"}  # nested, as OpenAI's
    assert set(data[-2]["error"]) == {"type", "code", "message", "param"}
    failed = data[-1]["response"]
    assert failed["id"] == data[0]["response"]["id"] == "resp_scripted001"
    assert failed["status"] == "failed" and failed["instructions"] == "Be brief."
    assert failed["error"] == {"code": "upstream_stream_error",
                               "message": data[-2]["error"]["message"]}
    assert failed["output"] == [] and failed["usage"] is None


async def test_a_relayed_stream_broken_off_after_its_end_is_complete() -> None:
    """The upstream sent everything through response.completed, then its connection reset
    instead of closing: the client has its whole answer, and nothing after it."""
    model = ResponsesModel(lambda reading: Answer("A whole answer."))

    async def breaks_after(request: httpx.Request) -> httpx.Response:
        status, headers, events = model.respond(json.loads(request.content))
        assert isinstance(events, list)
        return httpx.Response(status, headers=headers, stream=_BreaksOff(
            events, httpx.ReadError("connection reset by peer")))

    request = {"model": MODEL, "input": "hi", "stream": True}
    async with serve(breaks_after, path="/responses") as proxy:
        raw = await proxy.http.post("/v1/responses", headers=HEADERS, json=request)
        async with proxy.client.responses.stream(
            model=MODEL, input="hi"
        ) as stream:
            final = await stream.get_final_response()
    assert final.output_text == "A whole answer."
    types = [e.json["type"] for e in parse_sse(raw.text) if e.data is not None]
    assert types[-1] == "response.completed"


async def test_allowed_tools_reach_a_chat_upstream_as_chat_says_them() -> None:
    model = ScriptedModel(lambda reading: Answer("Chosen."))
    choice = {"type": "allowed_tools", "mode": "required",
              "tools": [{"type": "function", "name": "get_weather"}]}
    async with serve(model, vm_settings(responses="chat")) as proxy:
        response = await proxy.client.responses.create(
            **_request(tools=[WEATHER], tool_choice=choice))
    assert response.output_text == "Chosen."
    sent = model.requests[0]
    assert "<VM:" in json.dumps(sent["messages"][0])  # a memory turn
    assert sent["tool_choice"] == {"type": "allowed_tools", "allowed_tools": {
        "mode": "required", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}}
