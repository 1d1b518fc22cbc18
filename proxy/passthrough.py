"""Faithful pass-through: the client gets what the upstream sent.

Status, body bytes (compressed or not, as they came) and the headers that matter are
relayed. Streams go chunk by chunk as they arrive; small bodies are read whole and sent
with a Content-Length. Two things are not verbatim, by design:
- an upstream error body that is not in OpenAI's error shape is normalised to it;
- a transport failure becomes a 502/504 before the response starts, and an SSE error
  event (which the openai SDK raises on) after it has started.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy.access import AbortResponse, request_stats
from proxy.body import read_body
from proxy.disconnect import unless_disconnected
from proxy.errors import normalise_error_body
from proxy.logs import log
from proxy.upstream import (
    NOT_RELAYED_RAW,
    HeaderPairs,
    Upstream,
    error_for_transport_failure,
    relay_headers,
)

# Bodies up to this size (declared by Content-Length) are read whole and sent in one piece.
BUFFER_LIMIT = 1024 * 1024
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class RelayedResponse(Response):
    """A complete body with the upstream's headers as raw pairs (duplicates kept)."""

    def __init__(self, status_code: int, body: bytes, raw_headers: list[tuple[bytes, bytes]]):
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = [*raw_headers, (b"content-length", str(len(body)).encode())]


class RelayedStream(StreamingResponse):
    """The upstream's body relayed as it arrives; the upstream response is closed on the
    way out whatever happens (finished, failed, or the client went away)."""

    def __init__(self, upstream: Upstream, response: httpx.Response, head: _Head) -> None:
        self.upstream = upstream
        self.response = response
        self.status_code = response.status_code
        self.raw_headers = head.relayed
        self.background = None
        self.body_iterator = self._chunks()
        self._sse = head.is_sse
        self._encoded = head.encoded

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_raw():
                yield chunk
        except httpx.TransportError as exc:
            error = error_for_transport_failure(exc, self.upstream.base_url)
            if not self._sse or self._encoded:
                raise AbortResponse(error.message) from exc
            log.warning("upstream stream broke", extra={"reason": error.message})
            # An SSE client has already been told 200; an error event is the only way left
            # to say it failed (the openai SDK raises APIError on it).
            error.code = "upstream_stream_error"
            yield b"data: " + error.to_json() + b"\n\n"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.response.aclose()


async def passthrough_chat(
    target: Any, request: Request, raw_body: bytes, stream: bool
) -> Response:
    """Forward a chat completion as it is: the VM-off path and the fault loop's fail-open.

    `target` is the app state (anything with `.upstream`) or an `Upstream`. `stream` is the
    client's `stream` flag; the response is relayed by what the upstream actually sent.
    """
    upstream: Upstream = target if isinstance(target, Upstream) else target.upstream
    del stream  # the upstream's Content-Type, not the request, decides how to relay
    return await relay(
        upstream, request, "POST", "/chat/completions", raw_body, buffer_unsized=True
    )


async def passthrough_any(request: Request) -> Response:
    """Every `/v1/*` route other than chat completions, any method."""
    state = request.app.state
    body = await read_body(request, state.settings.server.max_body_bytes)
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw_path.decode("latin-1")
    path = path[path.index("/v1") + 3 :]
    return await relay(state.upstream, request, request.method, path, body or None)


async def relay(
    upstream: Upstream,
    request: Request,
    method: str,
    path: str,
    content: bytes | None,
    *,
    buffer_unsized: bool = False,
) -> Response:
    stats = request_stats(request)
    query = request.scope.get("query_string", b"").decode("latin-1")
    headers = upstream.headers_for(request.scope["headers"])
    started = time.perf_counter()
    reply = await unless_disconnected(
        request.receive,
        _exchange(upstream, method, path, query, headers, content, buffer_unsized),
    )
    stats.upstream_ms = (time.perf_counter() - started) * 1000.0
    stats.upstream_request_id = reply.head.request_id
    response = reply.response
    if reply.body is None:
        return RelayedStream(upstream, response, reply.head)
    if response.status_code < 400:
        return RelayedResponse(response.status_code, reply.body, reply.head.relayed)
    return _error_response(response, reply.body)


@dataclass(slots=True)
class _Head:
    """The response headers for the client and what the relay needs to know, from one
    pass over the raw pairs (httpx's `headers.get` re-decodes every header per call)."""

    relayed: list[tuple[bytes, bytes]]
    content_type: bytes = b""
    content_length: int | None = None
    encoded: bool = False
    request_id: str | None = None

    @property
    def is_sse(self) -> bool:
        return self.content_type.startswith(b"text/event-stream")


def _head_of(response: httpx.Response) -> _Head:
    head = _Head(relayed=[])
    relayed = head.relayed
    named_by_connection: set[bytes] = set()
    for raw_name, value in response.headers.raw:
        name = raw_name.lower()
        if name in NOT_RELAYED_RAW:
            if name == b"content-length":
                head.content_length = int(value) if value.isdigit() else None
            elif name == b"connection":  # it may name more hop-by-hop headers
                named_by_connection.update(t.strip().lower() for t in value.split(b","))
            continue
        relayed.append((name, value))
        if name == b"content-type":
            head.content_type = value.lower()
        elif name == b"content-encoding":
            head.encoded = value.strip().lower() not in (b"", b"identity")
        elif name == b"x-request-id":
            head.request_id = value.decode("latin-1")
    named_by_connection -= {b"keep-alive", b"close"}
    if named_by_connection:
        head.relayed = [(n, v) for n, v in relayed if n not in named_by_connection]
    return head


@dataclass(slots=True)
class _Reply:
    response: httpx.Response
    head: _Head
    body: bytes | None  # None: still to be streamed (the response stays open)


async def _exchange(
    upstream: Upstream,
    method: str,
    path: str,
    query: str,
    headers: HeaderPairs,
    content: bytes | None,
    buffer_unsized: bool,
) -> _Reply:
    """Send, and read the body unless it is to be streamed. An error body is read decoded
    (it may be rewritten); a success body raw (relayed with its Content-Encoding)."""
    response = await upstream.send(method, path, query=query, headers=headers, content=content)
    head = _head_of(response)
    if response.status_code < 400 and not _read_whole(head, buffer_unsized):
        return _Reply(response, head, None)
    try:
        if response.status_code >= 400:
            try:
                body = await response.aread()
            except httpx.DecodingError:
                body = b""
        else:
            # The stream itself, not aiter_raw(): the raw bytes either way, minus a layer
            # of async generator per request.
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            body = b"".join([chunk async for chunk in stream])
    except httpx.TransportError as exc:
        raise error_for_transport_failure(exc, upstream.base_url) from exc
    finally:
        await response.aclose()
    return _Reply(response, head, body)


def _read_whole(head: _Head, buffer_unsized: bool) -> bool:
    if head.is_sse:
        return False
    if head.content_length is None:
        return buffer_unsized
    return head.content_length <= BUFFER_LIMIT


def _error_response(response: httpx.Response, body: bytes) -> Response:
    """Relay an upstream 4xx/5xx: verbatim when already OpenAI-shaped, else normalised."""
    headers = relay_headers(response.headers, keep_encoding=False)
    if not is_openai_error(body):
        body = orjson.dumps(normalise_error_body(response.status_code, body))
        headers = [(n, v) for n, v in headers if n != b"content-type"]
        headers.append((b"content-type", b"application/json"))
    return RelayedResponse(response.status_code, body, headers)


def is_openai_error(body: bytes) -> bool:
    """`{"error": {"message": str, "type": str, "param": str|null, "code": str|null}}`."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return (
        isinstance(error, dict)
        and isinstance(error.get("message"), str)
        and isinstance(error.get("type"), str)
        and "param" in error
        and (error["param"] is None or isinstance(error["param"], str))
        and "code" in error
        and (error["code"] is None or isinstance(error["code"], str))
    )
