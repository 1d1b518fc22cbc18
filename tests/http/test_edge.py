"""The edge's own behaviour: client disconnects, the last-resort 500, broken streams,
body limits, route errors. Driven at the ASGI level where a client must misbehave."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Message

from proxy.metrics import Metrics
from tests.http.conftest import CHAT, UPSTREAM, completion, edge, settings_with
from tests.support.waiting import wait_until_cancelled


class Chunks(httpx.AsyncByteStream):
    """A response body that yields `chunks`, then raises `then` (if any) or waits on
    `hold` (if given); records whether it was closed."""

    def __init__(
        self,
        chunks: list[bytes],
        *,
        then: Exception | None = None,
        hold: asyncio.Event | None = None,
    ) -> None:
        self.chunks = chunks
        self.then = then
        self.hold = hold
        self.closed = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.hold is not None:
            await self.hold.wait()
        if self.then is not None:
            raise self.then

    async def aclose(self) -> None:
        self.closed.set()


def scope_for(body: bytes, path: str = "/v1/chat/completions") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"proxy"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", b"Bearer sk-client"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8787),
    }


async def call(
    app: Callable[..., Awaitable[None]],
    body: bytes,
    *,
    disconnect_after: float | None = None,
    disconnect_when_sent: int | None = None,
) -> list[Message]:
    """One request straight into the ASGI app. The client disconnects `disconnect_after`
    seconds after sending its body, or once it has received `disconnect_when_sent` body
    messages; otherwise it waits politely for the whole answer."""
    sent: list[Message] = []
    body_sent = False
    enough = asyncio.Event()

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if disconnect_after is not None:
            await asyncio.sleep(disconnect_after)
        else:
            await enough.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        bodies = [m for m in sent if m["type"] == "http.response.body"]
        if disconnect_when_sent is not None and len(bodies) >= disconnect_when_sent:
            enough.set()
        if message["type"] == "http.response.body" and not message.get("more_body"):
            enough.set()

    await asyncio.wait_for(app(scope_for(body), receive, send), timeout=10)
    return sent


def requests_counted(metrics: Metrics, status: int) -> float:
    return metrics.value(
        "vm_proxy_requests_total", {"route": "/v1/chat/completions", "status": str(status)}
    )


async def test_a_client_that_leaves_cancels_the_pending_upstream_request() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def never_answers(_: httpx.Request) -> httpx.Response:
        started.set()
        await wait_until_cancelled(cancelled)

    async with edge(never_answers) as proxy:
        sent = await call(proxy.app, orjson.dumps(CHAT), disconnect_after=0.2)
        assert started.is_set()
        assert cancelled.is_set()
        assert sent == []  # nobody to answer
        assert requests_counted(proxy.app.state.metrics, 499) == 1


async def test_a_client_that_leaves_mid_stream_closes_the_upstream_stream() -> None:
    hold = asyncio.Event()
    body = Chunks([b"data: {}\n\n", b"data: {}\n\n"], hold=hold)

    def streams(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)

    async with edge(streams) as proxy:
        sent = await call(proxy.app, orjson.dumps({**CHAT, "stream": True}), disconnect_when_sent=2)
        assert body.closed.is_set()
        assert sent[0]["status"] == 200
        assert not any(
            m["type"] == "http.response.body" and not m.get("more_body") for m in sent
        ), "the stream must not be reported as complete"


async def test_a_stream_that_breaks_ends_with_an_error_event_the_sdk_raises_on() -> None:
    body = Chunks([b'data: {"n": 1}\n\n'], then=httpx.ReadError("connection reset by peer"))

    def streams(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)

    async with edge(streams) as proxy:
        sent = await call(proxy.app, orjson.dumps({**CHAT, "stream": True}))
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    first, error_event, tail = payload.split(b"\n\n")
    assert first == b'data: {"n": 1}'
    error = orjson.loads(error_event.removeprefix(b"data: "))["error"]
    assert error["code"] == "upstream_stream_error"
    assert "connection reset by peer" in error["message"]
    assert tail == b""
    assert body.closed.is_set()


async def test_a_compressed_stream_that_breaks_is_cut_off_not_patched() -> None:
    # No error event can be spliced into gzip bytes: the connection is dropped instead, so
    # the client sees a truncated body rather than a corrupt one.
    packed = gzip.compress(b"data: {}\n\n" * 100)
    body = Chunks([packed[:40]], then=httpx.ReadError("reset"))

    def streams(_: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, stream=body)

    async with edge(streams) as proxy:
        sent = await call(proxy.app, orjson.dumps({**CHAT, "stream": True}))
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert b"".join(m["body"] for m in bodies) == packed[:40]
    assert all(m.get("more_body") for m in bodies)
    assert body.closed.is_set()


async def test_an_unexpected_failure_is_an_openai_shaped_500_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explodes(_: httpx.Request) -> httpx.Response:
        raise RuntimeError("secret internals at line 42")

    async with edge(explodes) as proxy:
        response = await proxy.http.post("/v1/chat/completions", json=CHAT)
        metrics = proxy.app.state.metrics
    assert response.status_code == 500
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "server_error"
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert requests_counted(metrics, 500) == 1
    logged = [r for r in caplog.records if r.name == "vm_proxy" and r.exc_info]
    assert logged and "secret internals at line 42" in str(logged[0].exc_info[1])


async def test_a_chunked_body_over_the_limit_is_413_once_it_passes_the_limit() -> None:
    def unreachable(_: httpx.Request) -> httpx.Response:
        raise AssertionError("the upstream must not be called")

    async with edge(unreachable, settings_with(server={"max_body_bytes": 1000})) as proxy:
        received = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal received
            for _ in range(100):
                received += 1
                yield b"x" * 100

        # No Content-Length: the limit is only known to be passed while reading.
        response = await proxy.http.post("/v1/chat/completions", content=body())
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert response.json()["error"]["code"] == "request_too_large"
    assert received <= 12  # stopped right after the 11th chunk, not at the 100th


async def test_a_content_length_that_is_not_a_number_is_400() -> None:
    async with edge(lambda _: httpx.Response(200, json=completion())) as proxy:
        response = await proxy.http.post(
            "/v1/chat/completions",
            content=orjson.dumps(CHAT),
            headers={"content-length": "twelve"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_wrong_method_is_an_openai_shaped_405() -> None:
    async with edge(lambda _: httpx.Response(200)) as proxy:
        response = await proxy.http.delete("/healthz")
    assert response.status_code == 405
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "DELETE" in error["message"]


async def test_query_string_and_encoded_path_reach_the_upstream_unchanged() -> None:
    async with edge(lambda _: httpx.Response(200, json={"ok": True})) as proxy:
        response = await proxy.http.get("/v1/files/file%2Fabc/content?limit=2&after=x%20y")
        seen = proxy.seen[0]
    assert response.json() == {"ok": True}
    assert seen.url.raw_path == b"/v1/files/file%2Fabc/content?limit=2&after=x%20y"
    assert str(seen.url).startswith(UPSTREAM)


async def test_a_relayed_responses_stream_that_breaks_ends_with_its_error_event() -> None:
    # A Responses API stream relayed as it is (mode off; a short chat's turn relays the
    # same way) ends with the API's own `error` event, not a chat completion's (the review),
    # numbered after the events relayed (these have no numbers: counted from 0), and, with
    # no Response shown to say failed, nothing after it.
    body = Chunks([b'event: response.created\ndata: {"type": "response.created"}\n\n'],
                  then=httpx.ReadError("connection reset by peer"))

    def streams(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)

    async with edge(streams) as proxy:
        response = await proxy.http.post(
            "/v1/responses", json={"model": "gpt-4o", "input": "hi", "stream": True},
            headers={"x-vm-mode": "off", "authorization": "Bearer sk-test"},
        )
    first, error_event, tail = response.content.split(b"\n\n")
    assert first.startswith(b"event: response.created")
    name, data = error_event.split(b"\n")
    assert name == b"event: error"
    event = orjson.loads(data.removeprefix(b"data: "))
    assert event["type"] == "error" and event["sequence_number"] == 1
    assert event["error"]["code"] == "upstream_stream_error"
    assert "connection reset by peer" in event["error"]["message"]
    assert tail == b""


async def test_a_compressed_chat_body_is_refused_as_such_and_relayed_elsewhere() -> None:
    # The proxy reads a chat body itself: gzip is a 415 naming the encoding (it was "not
    # valid UTF-8"; the review). A route it only relays gets the body as it came.
    def answers(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"encoding": request.headers.get("content-encoding"),
                                         "bytes": len(request.content)})

    packed = gzip.compress(orjson.dumps(CHAT))
    async with edge(answers) as proxy:
        headers = {"content-encoding": "gzip", "content-type": "application/json",
                   "authorization": "Bearer sk-test"}
        refused = await proxy.http.post("/v1/chat/completions", content=packed, headers=headers)
        relayed = await proxy.http.post("/v1/embeddings", content=packed, headers=headers)
    assert refused.status_code == 415
    error = refused.json()["error"]
    assert error["code"] == "unsupported_content_encoding" and "gzip" in error["message"]
    assert relayed.status_code == 200
    assert relayed.json() == {"encoding": "gzip", "bytes": len(packed)}
