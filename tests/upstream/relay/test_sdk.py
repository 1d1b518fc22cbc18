"""The openai SDK against the proxy: it must not be able to tell the proxy from the upstream.

Every test runs twice: with `X-VM-Mode: off`, and in the default mode with a conversation
short enough to stay below `vm.activate_above` (both are forwarded unchanged).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson

from tests.upstream.relay.conftest import (
    UPSTREAM,
    chunk,
    completion,
    serve,
    sse_bytes,
    sse_response,
    user_chat,
)

CHAT = f"{UPSTREAM}/chat/completions"


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _tool_call_events(calls: list[tuple[str, str, str]], piece: int) -> list[dict[str, Any]]:
    """Stream `calls` (id, name, arguments) one after another, arguments in `piece`-char bits."""
    events = [chunk({"role": "assistant", "content": None})]
    for index, (call_id, name, arguments) in enumerate(calls):
        header = {"index": index, "id": call_id, "type": "function"}
        header["function"] = {"name": name, "arguments": ""}
        events.append(chunk({"tool_calls": [header]}))
        for bit in _split(arguments, piece):
            events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": bit}}]}))
    events.append(chunk({}, "tool_calls"))
    return events


async def test_non_streaming_text(mode_headers: dict[str, str]) -> None:
    sent = completion("The capital of Portugal is Lisbon.")
    async with serve(headers=mode_headers) as proxy:
        proxy.router.post(CHAT).mock(return_value=httpx.Response(200, json=sent))
        request = user_chat("What is the capital of Portugal?", temperature=0)
        result = await proxy.client.chat.completions.create(**request)

        assert result.to_dict() == sent
        assert result.choices[0].message.content == "The capital of Portugal is Lisbon."
        (upstream,) = proxy.upstream_requests()
        # Forwarded unchanged: the same request body, nothing added.
        assert json.loads(upstream.content) == request


async def test_non_streaming_bytes_are_relayed_verbatim(mode_headers: dict[str, str]) -> None:
    # Pretty-printed with a key order orjson would not produce: any re-serialisation shows.
    sent = json.dumps(completion("ok"), indent=3).encode() + b"\n"
    async with serve() as proxy:
        proxy.router.post(CHAT).mock(
            return_value=httpx.Response(
                200, content=sent, headers={"content-type": "application/json"}
            )
        )
        response = await proxy.http.post(
            "/v1/chat/completions", json=user_chat(), headers=mode_headers
        )
        assert response.status_code == 200
        assert response.content == sent
        assert response.headers["content-type"] == "application/json"


async def test_streaming_text_bytes_and_sdk_chunks(mode_headers: dict[str, str]) -> None:
    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in ["Lis", "bon", " is", " the", " capital."]]
    events.append(chunk({}, "stop"))
    # An SSE comment and an odd split: one event across two writes, two events in one write.
    wire = [b": keep-alive\n\n", *sse_bytes(events)]
    joined = b"".join(wire)
    pieces = [joined[:7], joined[7:150], joined[150:400], joined[400:]]
    async with serve(headers=mode_headers) as proxy:
        route = proxy.router.post(CHAT)
        route.mock(side_effect=lambda request: sse_response(pieces))
        raw = await proxy.http.post(
            "/v1/chat/completions", json=user_chat(stream=True), headers=mode_headers
        )
        assert raw.status_code == 200
        assert raw.headers["content-type"].startswith("text/event-stream")
        assert raw.content == joined  # comment and [DONE] included

        stream = await proxy.client.chat.completions.create(**user_chat(stream=True))
        received = [item.to_dict() async for item in stream]
        assert received == events
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in received)
        assert text == "Lisbon is the capital."
        for upstream in proxy.upstream_requests():
            assert json.loads(upstream.content)["stream"] is True


async def test_single_tool_call_non_streaming(mode_headers: dict[str, str]) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
    }
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    sent = completion(None, tool_calls=[call])
    async with serve(headers=mode_headers) as proxy:
        proxy.router.post(CHAT).mock(return_value=httpx.Response(200, json=sent))
        result = await proxy.client.chat.completions.create(**user_chat("Weather?", tools=tools))
        assert result.to_dict() == sent
        (got,) = result.choices[0].message.tool_calls or []
        assert got.id == "call_1"
        assert json.loads(got.function.arguments) == {"city": "Lisbon"}
        (upstream,) = proxy.upstream_requests()
        assert json.loads(upstream.content)["tools"] == tools


async def test_parallel_tool_calls_non_streaming(mode_headers: dict[str, str]) -> None:
    calls = [
        {
            "id": f"call_{city}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
        }
        for city in ("Lisbon", "Porto", "Faro")
    ]
    sent = completion(None, tool_calls=calls)
    async with serve(headers=mode_headers) as proxy:
        proxy.router.post(CHAT).mock(return_value=httpx.Response(200, json=sent))
        result = await proxy.client.chat.completions.create(**user_chat("Weather in three cities?"))
        got = result.choices[0].message.tool_calls or []
        assert [c.id for c in got] == ["call_Lisbon", "call_Porto", "call_Faro"]
        assert result.to_dict() == sent


async def test_streamed_tool_calls_arguments_in_many_chunks(mode_headers: dict[str, str]) -> None:
    first = json.dumps({"city": "Lisbon", "unit": "celsius", "days": [1, 2, 3]})
    second = json.dumps({"query": "restaurants near Alfama with a view", "limit": 5})
    calls = [("call_a", "get_weather", first), ("call_b", "search", second)]
    events = _tool_call_events(calls, piece=3)
    assert len(events) > 30
    wire = sse_bytes(events)
    async with serve(headers=mode_headers) as proxy:
        proxy.router.post(CHAT).mock(side_effect=lambda request: sse_response(wire))
        raw = await proxy.http.post(
            "/v1/chat/completions", json=user_chat(stream=True), headers=mode_headers
        )
        assert raw.content == b"".join(wire)

        stream = await proxy.client.chat.completions.create(**user_chat(stream=True))
        received = [item async for item in stream]
        assert [c.to_dict() for c in received] == events
        arguments: dict[int, str] = {}
        ids: dict[int, str] = {}
        for item in received:
            for call in item.choices[0].delta.tool_calls or []:
                if call.id:
                    ids[call.index] = call.id
                arguments[call.index] = arguments.get(call.index, "") + (
                    call.function.arguments or "" if call.function else ""
                )
        assert ids == {0: "call_a", 1: "call_b"}
        assert arguments == {0: first, 1: second}
        assert received[-1].choices[0].finish_reason == "tool_calls"


async def test_stream_options_include_usage(mode_headers: dict[str, str]) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    events = [chunk({"role": "assistant", "content": ""}, usage=None)]
    events += [chunk({"content": "Hi"}), chunk({}, "stop"), chunk({}, choices=False, usage=usage)]
    for event in events[:-1]:
        event["usage"] = None  # OpenAI sends usage: null on every other chunk
    wire = sse_bytes(events)
    async with serve(headers=mode_headers) as proxy:
        proxy.router.post(CHAT).mock(side_effect=lambda request: sse_response(wire))
        stream = await proxy.client.chat.completions.create(
            **user_chat(stream=True, stream_options={"include_usage": True})
        )
        received = [item async for item in stream]
        assert [c.to_dict() for c in received] == events
        assert received[-1].choices == []
        assert received[-1].usage is not None and received[-1].usage.total_tokens == 11
        (upstream,) = proxy.upstream_requests()
        assert orjson.loads(upstream.content)["stream_options"] == {"include_usage": True}
