"""Faithful pass-through: the client gets what the upstream sent.

Status, body bytes (compressed or not, as they came) and the headers that matter are
relayed. Streams go chunk by chunk as they arrive; small bodies are read whole and sent
with a Content-Length. What is not verbatim, by design:
- an upstream error body that is not in OpenAI's error shape is normalised to it;
- a transport failure becomes a 502/504 before the response starts, and an SSE error
  event (which the openai SDK raises on) after it has started;
- on the two answering routes (`Expected`), a 2xx that is not the answer asked for (an
  HTML page, an empty or cut body, JSON without the answer, a JSON body for a stream) is
  a 502 `invalid_response`, and a chat stream that ends cleanly before its `finish_reason`
  or `[DONE]` ends with an error event: the client must not take a part for the whole.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy.errors import ProxyError, UpstreamError, normalise_error_body
from proxy.logs import log, request_stats
from proxy.upstream.client import Reply, Upstream, error_for_transport_failure
from proxy.upstream.disconnect import unless_disconnected
from proxy.upstream.headers import HeaderPairs, RelayHead, relay_head
from proxy.upstream.responses_relay import RelayedEvents
from proxy.upstream.sse import encode_data


class AbortResponse(Exception):
    """The response has started and cannot be finished; the connection is dropped."""


# Bodies up to this size (declared by Content-Length) are read whole and sent in one piece.
BUFFER_LIMIT = 1024 * 1024
# What of a wrong answer's body an error quotes.
QUOTED_BYTES = 300
# What ends a chat stream: its [DONE], a finish_reason, or the upstream's own error event,
# however spaced (a split across chunks is caught by scanning each chunk with the end of
# the one before).
_STREAM_END = re.compile(
    rb'(?m)^data:\s*\[DONE\]|"finish_reason"\s*:\s*"[^"]|^event:\s*error'
    rb'|^data:\s*\{\s*"error"')
_CARRIED = 64
# What a streaming request may be answered with: an event stream, said so or not (a
# hand-rolled server's StreamingResponse sends no type, or text/plain).
_STREAM_TYPES = (b"text/event-stream", b"text/plain", b"")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Expected:
    """What a 2xx of an answering route must be: an event stream (`stream`), else, when
    `whole` (the memory paths, which read the answer), a JSON object holding `key` (or an
    `error`); `chat`: a chat stream, which must finish."""

    stream: bool
    key: str
    whole: bool = True
    chat: bool = False


@functools.cache
def expected(stream: bool, key: str, whole: bool = True, chat: bool = False) -> Expected:
    """The `Expected` of these values, made once (there are a few, each asked per request;
    pass them positionally, the cheap key)."""
    return Expected(stream, key, whole=whole, chat=chat)


class RelayedResponse(Response):
    """A complete body with the upstream's headers as raw pairs (duplicates kept); `parsed`:
    the body's JSON when the relay read it already (proxy.loop.observe reads it then)."""

    def __init__(
        self,
        status_code: int,
        body: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        parsed: dict[str, Any] | None = None,
    ):
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = [*raw_headers, (b"content-length", str(len(body)).encode())]
        self.parsed = parsed


class RelayedStream(StreamingResponse):
    """The upstream's body relayed as it arrives; the upstream response is closed on the
    way out whatever happens (finished, failed, or the client went away)."""

    def __init__(
        self,
        upstream: Upstream,
        reply: Reply,
        head: RelayHead,
        *,
        responses: bool = False,
        chat: bool = False,
    ) -> None:
        self.upstream = upstream
        self.reply = reply
        self.status_code = reply.status_code
        self.raw_headers = head.relayed
        self.background = None
        self.body_iterator = self._chunks()
        self._sse = head.is_sse
        self._encoded = head.encoded
        # A Responses API stream (its events named and numbered) is read as it goes, to
        # end it as the API ends a failed one should the upstream break it off.
        self._events = RelayedEvents() if responses and self._sse and not self._encoded else None
        # A chat stream read as plain bytes is watched for its end (an encoded one is not).
        self._must_finish = chat and self._sse and not self._encoded

    async def _chunks(self) -> AsyncIterator[bytes]:
        finished, tail = not self._must_finish, b""
        try:
            async for chunk in self.reply.aiter_raw():
                if self._events is not None:
                    self._events.saw(chunk)
                if not finished:
                    seen = tail + chunk
                    finished = _STREAM_END.search(seen) is not None
                    tail = seen[-_CARRIED:]
                yield chunk
        except httpx.TransportError as exc:
            error = error_for_transport_failure(exc, self.upstream.base_url, replying=True)
            if self._events is not None and self._events.ended:
                log.info("upstream closed its stream badly after its end",
                         extra={"reason": error.message})
                return
            if not self._sse or self._encoded:
                raise AbortResponse(error.message) from exc
            log.warning("upstream stream broke", extra={"reason": error.message})
            # An SSE client has already been told 200; an error event is the only way left
            # to say it failed (the openai SDK raises APIError on it).
            error.code = "upstream_stream_error"
            if self._events is None:
                yield encode_data(error.to_json())
                return
            yield self._events.failed(error)  # `error`, then `response.failed`
            return
        if not finished:
            log.warning("upstream stream ended before its finish_reason or [DONE]")
            unfinished = UpstreamError("The upstream's stream ended before the answer did.",
                                       code="upstream_stream_incomplete")
            yield encode_data(unfinished.to_json())

    def failure(self, error: ProxyError) -> bytes:
        """The bytes that end this stream with `error`, in its dialect: a Responses
        stream's `error` and `response.failed`, else an SSE error event (the SDK raises
        it)."""
        if self._events is not None:
            return self._events.failed(error)
        return encode_data(error.to_json())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.reply.aclose()


async def relay_chat(
    upstream: Upstream, request: Request, raw_body: bytes, *, stream: bool, whole: bool = True
) -> Response:
    """A chat completion forwarded as it is: the VM-off path (`whole` False: a body is
    relayed whatever it holds), the short chats and the fault loop's fail-open. The
    upstream's Content-Type decides how it is relayed, once it fits the request's `stream`
    (else a 502)."""
    answer = expected(stream, "choices", whole, True)
    return await relay(upstream, request, "POST", "/chat/completions", raw_body,
                       buffer_unsized=True, expects=answer)


async def relay(
    upstream: Upstream,
    request: Request,
    method: str,
    path: str,
    content: bytes | None,
    *,
    buffer_unsized: bool = False,
    expects: Expected | None = None,
) -> Response:
    stats = request_stats(request.scope)
    query = request.scope.get("query_string", b"").decode("latin-1")
    headers = upstream.headers_for(request.scope["headers"])
    started = time.perf_counter()
    # A stream asked for is relayed as it comes whatever type it says (a hand-rolled
    # server's says none, or text/plain), not read whole first.
    streamed = expects is not None and expects.stream
    exchanged = await unless_disconnected(
        request.receive,
        _exchange(upstream, method, path, query, headers, content,
                  buffer_unsized and not streamed),
    )
    stats.upstream_ms = (time.perf_counter() - started) * 1000.0
    head = exchanged.head
    stats.upstream_request_id = head.request_id
    status = exchanged.reply.status_code
    parsed = None
    if expects is not None and status < 400:
        parsed = await _checked_answer(exchanged, expects)
    if exchanged.body is None:
        return RelayedStream(upstream, exchanged.reply, head,
                             responses=path.endswith("/responses"),
                             chat=expects is not None and expects.chat)
    if status < 400:
        return RelayedResponse(status, exchanged.body, head.relayed, parsed)
    return _error_response(status, exchanged.body, head)


async def _checked_answer(exchanged: _Exchanged, expects: Expected) -> dict[str, Any] | None:
    """A 2xx's JSON, when read to check it is the answer `expects`; a 502 raised when it
    is not (an encoded body is taken on its Content-Type alone)."""
    head, body = exchanged.head, exchanged.body
    if expects.stream:
        if head.media_type in _STREAM_TYPES:
            return None
        if body is None:
            try:
                body = (await exchanged.reply.read())[:QUOTED_BYTES]
            except httpx.TransportError:
                body = b""
            finally:
                await exchanged.reply.aclose()
        raise UpstreamError(
            f"The upstream answered a streaming request with {_kind(head)}, not an event stream: "
            f"{body[:QUOTED_BYTES].decode('utf-8', 'replace')!r}", code="invalid_response")
    if not expects.whole or body is None or head.is_sse or head.encoded:
        return None  # a large body, or a stream the client did not ask for: relayed as is
    try:
        parsed = orjson.loads(body[3:] if body.startswith(_BOM) else body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and (expects.key in parsed or "error" in parsed):
        return parsed
    raise UpstreamError(
        f"The upstream answered with {_kind(head)}, not a JSON answer: "
        f"{body[:QUOTED_BYTES].decode('utf-8', 'replace')!r}", code="invalid_response")


@dataclass(slots=True)
class _Exchanged:
    reply: Reply
    head: RelayHead
    body: bytes | None  # None: still to be streamed (the reply stays open)


async def _exchange(
    upstream: Upstream,
    method: str,
    path: str,
    query: str,
    headers: HeaderPairs,
    content: bytes | None,
    buffer_unsized: bool,
) -> _Exchanged:
    """Send, and read the body unless it is to be streamed. An error body is read decoded
    (it may be rewritten); a success body raw (relayed with its Content-Encoding)."""
    reply = await upstream.open(method, path, query=query, headers=headers, content=content)
    head = relay_head(reply.raw_headers)
    status = reply.status_code
    if status < 400 and not _read_whole(head, buffer_unsized):
        return _Exchanged(reply, head, None)
    try:
        if status >= 400:
            try:
                body = await reply.read_decoded()
            except httpx.DecodingError:
                body = b""
        else:
            body = await reply.read()
    except httpx.TransportError as exc:
        raise error_for_transport_failure(exc, upstream.base_url, replying=True) from exc
    finally:
        await reply.aclose()
    return _Exchanged(reply, head, body)


def _kind(head: RelayHead) -> str:
    return head.media_type.decode("latin-1") or "no content type"


def _read_whole(head: RelayHead, buffer_unsized: bool) -> bool:
    if head.is_sse:
        return False
    if head.content_length is None:
        return buffer_unsized
    return head.content_length <= BUFFER_LIMIT


def _error_response(status: int, body: bytes, head: RelayHead) -> Response:
    """Relay an upstream 4xx/5xx: verbatim when already OpenAI-shaped, else normalised.
    The body was read decoded, so its Content-Encoding does not go along."""
    headers = head.decoded()
    if not is_openai_error(body):
        body = orjson.dumps(normalise_error_body(status, body))
        headers = [(n, v) for n, v in headers if n != b"content-type"]
        headers.append((b"content-type", b"application/json"))
    return RelayedResponse(status, body, headers)


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
