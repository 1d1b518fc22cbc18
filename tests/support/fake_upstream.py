"""An OpenAI-like upstream on a loopback port, served from a background thread.

    with FakeUpstream() as upstream:            # default: chat completions, SSE when asked
        upstream.url                            # http://127.0.0.1:<port>/v1
        upstream.requests                       # every request it received, in order

    with FakeUpstream(handler) as upstream:     # handler(RecordedRequest) -> Reply
        ...

A `Reply` is a JSON body, raw bytes, or a list of SSE chunks written one by one. Between
chunks a reply may sleep or wait on a `threading.Event` ("gate"), which lets a test prove
that the proxy relays each chunk before the upstream has sent the next.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int] | None = None  # the client's address: same port, same connection

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: Sequence[bytes] | None = None  # streamed one write per chunk when set
    delay_s: float = 0.0  # sleep before each chunk after the first
    gates: dict[int, threading.Event] = field(default_factory=dict)  # chunk index -> wait
    headers_delay_s: float = 0.0  # sleep before answering at all
    abort_after: int | None = None  # drop the connection after this many chunks

    @classmethod
    def json(cls, value: Any, status: int = 200, **headers: str) -> Reply:
        return cls(status, {"content-type": "application/json", **headers}, orjson.dumps(value))

    @classmethod
    def sse(
        cls, events: Sequence[bytes | dict[str, Any]], *, done: bool = True, **kw: Any
    ) -> Reply:
        chunks = [
            e if isinstance(e, bytes) else b"data: " + orjson.dumps(e) + b"\n\n" for e in events
        ]
        if done:
            chunks.append(b"data: [DONE]\n\n")
        headers = {"content-type": "text/event-stream; charset=utf-8", **kw.pop("headers", {})}
        return cls(200, headers, chunks=chunks, **kw)


Handler = Callable[[RecordedRequest], Reply]


def completion(
    text: str = "Hello from the fake upstream.", model: str = "fake-model"
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def chunk(
    delta: dict[str, Any], finish: str | None = None, model: str = "fake-model"
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def text_stream(pieces: Sequence[str]) -> list[dict[str, Any]]:
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in pieces]
    events.append(chunk({}, finish="stop"))
    return events


def default_handler(request: RecordedRequest) -> Reply:
    if request.method == "POST" and request.path == "/v1/chat/completions":
        body = request.json()
        if body.get("stream"):
            return Reply.sse(text_stream(["Hello", " from", " the", " fake", " upstream."]))
        return Reply.json(completion())
    if request.method == "GET" and request.path == "/v1/models":
        return Reply.json({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
    return Reply.json(
        {
            "error": {
                "message": "no such route",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
        status=404,
    )


class FakeUpstream:
    def __init__(self, handler: Handler = default_handler) -> None:
        self.handler = handler
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            peer=request.transport.get_extra_info("peername") if request.transport else None,
        )
        self.requests.append(recorded)
        reply = self.handler(recorded)
        if reply.headers_delay_s:
            await asyncio.sleep(reply.headers_delay_s)
        if reply.chunks is None:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        await response.prepare(request)
        for index, piece in enumerate(reply.chunks):
            gate = reply.gates.get(index)
            if gate is not None:
                await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
            if index and reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if index == reply.abort_after and request.transport is not None:
                request.transport.close()
                return response
            await response.write(piece)
        await response.write_eof()
        return response
