"""The processes `overhead.py` measures, one per invocation:

    python benchmarks/_servers.py upstream          --port P
    python benchmarks/_servers.py aiohttp           --port P --upstream http://127.0.0.1:U
    python benchmarks/_servers.py starlette-aiohttp --port P --upstream ...
    python benchmarks/_servers.py starlette-httpx   --port P --upstream ...
    python benchmarks/_servers.py load --port P --concurrency C --duration S --max-requests N
                                      [--chat short]

`upstream` answers every request with one small chat completion from a bare asyncio
protocol, so it costs as little CPU as possible. The three passthroughs are the bare
baselines: no validation, no logging, no metrics. `load` is the load generator: C
keep-alive connections, each sending the next request as soon as the last answer is
complete; it prints one JSON line of results. It parses responses with httptools, far
cheaper per request than a full client, so the machine's cores go to the servers. With
`--chat short` every request is a turn of a short chat instead of the same one message:
each connection runs chats of `SHORT_TURNS` turns, resending the history as a chat app
does (the answers are the fake upstream's constant one), so the proxy stores a new user
message and a new answer on every request. With `--chat oneshot` every request is a new
chat of one message (an app's single calls: a classification, an extraction), so each is a
new conversation's first turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, cast

import httptools
import uvloop

CHAT_BODY = json.dumps(
    {"model": "fake-model", "messages": [{"role": "user", "content": "Say hello."}]}
).encode()
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    }
).encode()
SHORT_TURNS = 4
_TOPICS = ["the garden", "a trip to Lisbon", "sourdough", "the bike", "jazz records",
           "the telescope", "a birthday dinner", "camping gear"]


def short_chat_body(connection: int, number: int, turns: int | None = None) -> bytes:
    """The body of request `number` of `connection`: a turn of one of its short chats, of
    `turns` turns (SHORT_TURNS by default)."""
    chat, turn = divmod(number, SHORT_TURNS if turns is None else turns)
    topic = _TOPICS[(connection + chat) % len(_TOPICS)]
    messages: list[dict[str, str]] = []
    for i in range(turn + 1):
        if i:
            messages.append({"role": "assistant", "content": "Hello! How can I help?"})
        messages.append({"role": "user", "content": (
            f"Chat {connection}.{chat}, message {i}: tell me something about {topic}, "
            f"which I have been thinking about since {1990 + (chat + i) % 30}."
        )})
    return json.dumps({"model": "fake-model", "messages": messages}).encode()


UPSTREAM_REPLY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_bench\r\n"
    b"content-length: " + str(len(COMPLETION)).encode() + b"\r\n\r\n" + COMPLETION
)


# -- fake upstream -----------------------------------------------------------------------


class _UpstreamProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they quack like one.
        self.transport = cast(asyncio.Transport, transport)
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(UPSTREAM_REPLY)


async def serve_upstream(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_UpstreamProtocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# -- bare passthroughs ---------------------------------------------------------------------


async def serve_aiohttp(port: int, upstream: str) -> None:
    import aiohttp
    from aiohttp import web

    session: aiohttp.ClientSession | None = None

    async def forward(request: web.Request) -> web.Response:
        assert session is not None
        body = await request.read()
        headers = {"content-type": request.headers.get("content-type", "application/json")}
        if "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]
        async with session.post(upstream + request.path, data=body, headers=headers) as reply:
            payload = await reply.read()
            return web.Response(
                body=payload,
                status=reply.status,
                headers={"content-type": reply.headers.get("content-type", "application/json")},
            )

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await asyncio.Event().wait()


def starlette_app(upstream: str, client_kind: str) -> Any:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    state: dict[str, Any] = {}

    async def forward(request: Request) -> Response:
        body = await request.body()
        headers = {"content-type": request.headers.get("content-type", "application/json")}
        if "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]
        url = upstream + request.url.path
        if client_kind == "aiohttp":
            async with state["client"].post(url, data=body, headers=headers) as reply:
                payload = await reply.read()
                status, ctype = reply.status, reply.headers.get("content-type")
        else:
            reply = await state["client"].post(url, content=body, headers=headers)
            payload, status, ctype = (
                reply.content,
                reply.status_code,
                reply.headers.get("content-type"),
            )
        return Response(payload, status_code=status, media_type=ctype)

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        if client_kind == "aiohttp":
            import aiohttp

            state["client"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        else:
            import httpx

            state["client"] = httpx.AsyncClient()  # the default pool, as most apps use it
        yield
        await state["client"].close() if client_kind == "aiohttp" else await state[
            "client"
        ].aclose()

    return Starlette(
        routes=[Route("/{path:path}", forward, methods=["GET", "POST"])], lifespan=lifespan
    )


def serve_starlette(port: int, upstream: str, client_kind: str) -> None:
    import uvicorn

    uvicorn.run(
        starlette_app(upstream, client_kind),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        backlog=1024,
    )


# -- load generator ------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    def __init__(self, request: bytes, bodies: Any = None) -> None:
        self.request = request
        self.bodies = bodies  # number -> request bytes, when every request differs
        self.sent = 0
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection closed"))

    async def exchange(self) -> int:
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        if self.bodies is None:
            self.transport.write(self.request)
        else:
            self.transport.write(self.bodies(self.sent))
        self.sent += 1
        return await self.done


def _request(port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        "content-type: application/json\r\nauthorization: Bearer sk-bench\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def generate_load(
    port: int, path: str, concurrency: int, duration_s: float, max_requests: int,
    warmup_s: float, chat: str = "same",
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    request = _request(port, path, CHAT_BODY)
    # Each run's chats are new: a run id keeps them apart from an earlier run's.
    run = int(time.time() * 1000) % 1_000_000
    connections = []
    for index in range(concurrency):
        bodies = None
        if chat in ("short", "oneshot"):
            turns = 1 if chat == "oneshot" else None

            def bodies(number: int, c: int = run * 1000 + index, t: int | None = turns) -> bytes:
                return _request(port, path, short_chat_body(c, number, t))
        _, protocol = await loop.create_connection(
            lambda b=bodies: _Connection(request, b), "127.0.0.1", port
        )
        connections.append(protocol)
    latencies: list[float] = []
    errors = 0
    total = 0  # warm-up included: the denominator of the servers' CPU time
    measuring = False
    stop_at = time.perf_counter() + warmup_s + duration_s

    async def worker(connection: _Connection) -> None:
        nonlocal errors, total
        while time.perf_counter() < stop_at and len(latencies) < max_requests:
            started = time.perf_counter()
            status = await connection.exchange()
            total += 1
            if measuring:
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

    async def start_measuring() -> float:
        nonlocal measuring
        await asyncio.sleep(warmup_s)
        measuring = True
        return time.perf_counter()

    measure_task = asyncio.ensure_future(start_measuring())
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - await measure_task
    for connection in connections:
        assert connection.transport is not None
        connection.transport.close()
    latencies.sort()

    def quantile(q: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000.0

    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "all_requests": total,
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(quantile(0.50), 3),
        "p99_ms": round(quantile(0.99), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "kind", choices=["upstream", "aiohttp", "starlette-aiohttp", "starlette-httpx", "load"]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="")
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--chat", choices=["same", "short", "oneshot"], default="same")
    args = parser.parse_args(argv)
    if args.kind == "upstream":
        uvloop.run(serve_upstream(args.port))
    elif args.kind == "aiohttp":
        uvloop.run(serve_aiohttp(args.port, args.upstream))
    elif args.kind.startswith("starlette-"):
        serve_starlette(args.port, args.upstream, args.kind.removeprefix("starlette-"))
    else:
        result = uvloop.run(
            generate_load(
                args.port,
                args.path,
                args.concurrency,
                args.duration,
                args.max_requests,
                args.warmup,
                args.chat,
            )
        )
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
