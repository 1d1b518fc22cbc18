"""A 2xx that is not the answer asked for, on the relayed paths (a new user's first chats
go there: below `vm.activate_above`), as the openai SDK meets it:

- a streaming request answered with a JSON or HTML body is a 502 `invalid_response`, in
  mode off too;
- with memory on, a non-streaming request answered with an HTML page, an empty or cut
  body, or JSON without the answer is a 502 (it used to be relayed as a 200, on which the
  SDK fails with an AttributeError, and was not stored); mode off, a pure pass-through,
  relays it as it came;
- a chat stream that the upstream ends cleanly before its `finish_reason` or `[DONE]`
  ends with an error event, which the SDK raises (it used to end quietly, the part taken
  for the whole); a stream ended by a finish_reason, or by the upstream's own error event,
  gets nothing more.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from proxy.store import open_store
from tests.upstream.relay.conftest import (
    UPSTREAM,
    VM_OFF,
    Chunks,
    assert_openai_error,
    chunk,
    completion,
    serve,
    sse_bytes,
    sse_response,
    user_chat,
)

CHAT = f"{UPSTREAM}/chat/completions"
RESPONSES = f"{UPSTREAM}/responses"
HTML = b"<html><body>Sign in to the hotel wifi</body></html>"
WRONG_BODIES = {
    "html": (b"text/html", HTML),
    "cut json": (b"application/json", json.dumps(completion())[:60].encode()),
    "empty": (b"application/json", b""),
    "no choices": (b"application/json", b'{"contentType": "application/json"}'),
    "a list": (b"application/json", b"[1, 2]"),
}


def answered(content_type: bytes, body: bytes) -> Any:
    return lambda request: httpx.Response(200, headers={"content-type": content_type.decode()},
                                          content=body)


@pytest.mark.parametrize("wrong", sorted(WRONG_BODIES))
async def test_a_wrong_body_for_a_chat_is_a_502_with_memory_on(wrong: str) -> None:
    content_type, body = WRONG_BODIES[wrong]
    store = await open_store("memory://")
    async with serve(store=store) as proxy:
        proxy.router.post(CHAT).mock(side_effect=answered(content_type, body))
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat())
        assert raw.status_code == 502
        error = assert_openai_error(raw.json())
        assert error["code"] == "invalid_response" and error["type"] == "upstream_error"
        with pytest.raises(openai.APIStatusError) as caught:
            await proxy.client.chat.completions.create(**user_chat())
        assert caught.value.status_code == 502
        off = await proxy.http.post("/v1/chat/completions", json=user_chat(), headers=VM_OFF)
        assert off.status_code == 200 and off.content == body  # the pure pass-through
        conversations = await store.list_conversations()
    assert all(conv.length <= 1 for conv in conversations)  # no answer stored
    await store.close()


async def test_an_error_object_and_a_completion_still_pass() -> None:
    errored = {"error": {"message": "overloaded", "type": "server_error", "param": None,
                         "code": None}}
    async with serve() as proxy:
        proxy.router.post(CHAT).mock(side_effect=[
            httpx.Response(200, json=errored), httpx.Response(200, json=completion())])
        first = await proxy.http.post("/v1/chat/completions", json=user_chat())
        assert first.status_code == 200 and first.json() == errored
        second = await proxy.client.chat.completions.create(**user_chat("Again."))
        assert second.choices[0].message.content == "Hello there."


@pytest.mark.parametrize("mode", ["memory", "off"])
@pytest.mark.parametrize("content_type,body", [
    (b"application/json", json.dumps(completion()).encode()), (b"text/html", HTML)],
    ids=["json", "html"])
async def test_a_stream_answered_with_a_body_is_a_502(
    mode: str, content_type: bytes, body: bytes
) -> None:
    headers = VM_OFF if mode == "off" else {}
    async with serve(headers=headers) as proxy:
        proxy.router.post(CHAT).mock(side_effect=answered(content_type, body))
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat(stream=True),
                                    headers=headers)
        assert raw.status_code == 502
        error = assert_openai_error(raw.json())
        assert error["code"] == "invalid_response"
        assert "not an event stream" in error["message"] and body[:20].decode() in error["message"]


@pytest.mark.parametrize("mode", ["memory", "off"])
async def test_a_stream_cut_cleanly_ends_with_an_error_the_sdk_raises(mode: str) -> None:
    headers = VM_OFF if mode == "off" else {}
    wire = sse_bytes([chunk({"role": "assistant", "content": ""}),
                      chunk({"content": "partial answer"})], done=False)
    async with serve(headers=headers) as proxy:
        proxy.router.post(CHAT).mock(side_effect=lambda request: sse_response(wire))
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat(stream=True),
                                    headers=headers)
        assert raw.status_code == 200 and raw.content.startswith(b"".join(wire))
        tail = raw.content[len(b"".join(wire)):]
        assert tail.startswith(b"data: ") and tail.endswith(b"\n\n")
        assert assert_openai_error(json.loads(tail[6:]))["code"] == "upstream_stream_incomplete"
        seen: list[str] = []
        stream = await proxy.client.chat.completions.create(**user_chat(stream=True))
        with pytest.raises(openai.APIError):
            async for item in stream:
                seen.append(item.choices[0].delta.content or "")
        assert "".join(seen) == "partial answer"


@pytest.mark.parametrize("ending", ["finish without [DONE]", "[DONE] split", "error event"])
async def test_a_finished_stream_gets_nothing_more(ending: str) -> None:
    start = sse_bytes([chunk({"role": "assistant", "content": "Hi"})], done=False)
    if ending == "finish without [DONE]":
        wire = [*start, *sse_bytes([chunk({}, finish="stop")], done=False)]
    elif ending == "[DONE] split":
        wire = [*start, *sse_bytes([chunk({}, finish=None)], done=False), b"data: [DO",
                b"NE]\n\n"]
    else:
        wire = [*start, b'event: error\ndata: {"error":{"message":"boom","type":"server_error",'
                        b'"param":null,"code":null}}\n\n']
    async with serve() as proxy:
        proxy.router.post(CHAT).mock(side_effect=lambda request: sse_response(wire))
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat(stream=True))
        assert raw.content == b"".join(wire)


async def test_a_responses_request_answered_with_html_is_a_502() -> None:
    async with serve() as proxy:
        proxy.router.post(RESPONSES).mock(side_effect=answered(b"text/html", HTML))
        with pytest.raises(openai.APIStatusError) as caught:
            await proxy.client.responses.create(model="gpt-4o-mini", input="Hello")
        assert caught.value.status_code == 502
        off = await proxy.http.post("/v1/responses", headers=VM_OFF,
                                    json={"model": "gpt-4o-mini", "input": "Hello"})
        assert off.status_code == 200 and off.content == HTML


@pytest.mark.parametrize("mode", ["memory", "off"])
@pytest.mark.parametrize("content_type", [None, "text/plain"], ids=["untyped", "text-plain"])
async def test_a_stream_whose_type_is_not_said_is_relayed(
    mode: str, content_type: str | None
) -> None:
    """A hand-rolled server's StreamingResponse sends its events with no content type (or
    text/plain); the SDK reads them by the request's `stream`: relayed, not a 502."""
    headers = VM_OFF if mode == "off" else {}
    wire = b"".join(sse_bytes([chunk({"role": "assistant", "content": "Hi"}),
                               chunk({}, finish="stop")]))
    reply_headers = {} if content_type is None else {"content-type": content_type}
    async with serve(headers=headers) as proxy:
        proxy.router.post(CHAT).mock(
            side_effect=lambda request: httpx.Response(200, headers=reply_headers, content=wire))
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat(stream=True),
                                    headers=headers)
        assert raw.status_code == 200 and raw.content == wire


@pytest.mark.parametrize("ending", [
    b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason" : "stop"}]}\n\n',
    b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":\t"stop"}]}\n\n',
    b'data:{"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n',
], ids=["space before colon", "tab", "unspaced error"])
async def test_a_stream_ended_however_spaced_gets_nothing_more(ending: bytes) -> None:
    wire = [*sse_bytes([chunk({"role": "assistant", "content": "Hi"})], done=False), ending]
    async with serve() as proxy:
        proxy.router.post(CHAT).mock(side_effect=lambda request: sse_response(wire))
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat(stream=True))
        assert raw.content == b"".join(wire)


async def test_a_json_answer_with_a_byte_order_mark_passes() -> None:
    body = b"\xef\xbb\xbf" + json.dumps(completion()).encode()
    async with serve() as proxy:
        proxy.router.post(CHAT).mock(side_effect=answered(b"application/json", body))
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat())
        assert raw.status_code == 200 and raw.content == body


async def test_an_untyped_stream_is_relayed_as_it_comes_and_stored() -> None:
    """Not read whole before its first byte goes out (a long answer would wait for its
    end), and its answer is stored (read as JSON, it was not)."""
    wire = sse_bytes([chunk({"role": "assistant", "content": "Hi"}), chunk({}, finish="stop")])
    store = await open_store("memory://")
    async with serve(store=store) as proxy:
        proxy.router.post(CHAT).mock(side_effect=lambda request: httpx.Response(
            200, stream=Chunks(wire)))
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat(stream=True),
                                    headers={"x-vm-session": "untyped"})
        assert raw.status_code == 200 and raw.content == b"".join(wire)
        assert "content-length" not in raw.headers  # streamed, not buffered
        (conv,) = await store.list_conversations()
        assert conv.length == 2  # the question and its answer
    await store.close()


@pytest.mark.parametrize("wire", [
    [b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":""}]}\n\n'],
    [b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"event: error [DONE]"},'
     b'"finish_reason":null}]}\n\n'],
], ids=["empty finish reason", "ending words in content"])
async def test_a_stream_cut_after_what_only_looks_like_an_end_is_told_so(
    wire: list[bytes]
) -> None:
    async with serve() as proxy:
        proxy.router.post(CHAT).mock(side_effect=lambda request: sse_response(wire))
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat(stream=True))
        assert raw.content.startswith(b"".join(wire))
        assert b"upstream_stream_incomplete" in raw.content[len(b"".join(wire)):]
