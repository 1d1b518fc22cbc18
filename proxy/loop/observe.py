"""A pass-through that still builds memory: the reply is relayed untouched while a copy is
assembled, and stored as a page once complete (a client that sends only new messages under
`X-VM-Session` never resends it, so the proxy must keep it).

The client gets the upstream's bytes as they came, compressed or not; the copy is decoded
here (gzip and deflate, what HTTP clients ask for by default). A reply in an encoding the
standard library cannot decode is relayed without being stored, and logged.

When the request held only its new messages (`store_first`), the answer is stored before
its end reaches the client: the client will never send it again, so an answer it has
seen must be durable, and the client's next turn, on this replica or another, must find
it. A whole-history request's answer is stored after it is sent: the client resends it."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from proxy.errors import MemoryUnavailable
from proxy.logs import log
from proxy.loop.failures import answer_not_stored, log_failure
from proxy.upstream.assemble import AssembledMessage, ChunkAccumulator
from proxy.upstream.completion import stored_answer
from proxy.upstream.relay import RelayedResponse, RelayedStream
from proxy.upstream.sse import SSEDecoder, SSEEvent, encode_data

OnAnswer = Callable[[AssembledMessage], Awaitable[None]]


class Accumulator(Protocol):
    @property
    def finished(self) -> bool: ...

    def feed_event(self, event: SSEEvent) -> object: ...

    def result(self) -> AssembledMessage: ...


@dataclass(frozen=True, slots=True)
class Reader:
    """How a dialect's reply is read: a whole body, or a stream's events."""

    body: Callable[[Mapping[str, Any]], AssembledMessage]
    stream: Callable[[], Accumulator]


# What is stored of a chat answer: its content and calls (or its error).
CHAT = Reader(body=stored_answer, stream=ChunkAccumulator)


def observe(
    response: Response, on_answer: OnAnswer, reader: Reader = CHAT, *, store_first: bool = False
) -> Response:
    """Call `on_answer` with the assembled reply of a relayed 2xx answer (a chat completion,
    or what `reader` reads); with `store_first`, before the answer's end is sent."""
    if response.status_code >= 300:
        return response
    encoding = _content_encoding(response)
    if encoding not in _WBITS:
        log.warning(
            "relayed answer not stored: content-encoding %r cannot be decoded", encoding
        )
        return response
    if isinstance(response, RelayedStream):
        response.body_iterator = _tee(
            response.body_iterator, on_answer, _Decoder(encoding), reader.stream(), store_first,
            failure=response.failure,
        )
        return response
    if isinstance(response, RelayedResponse):
        return _ObservedResponse(response, on_answer, _Decoder(encoding), reader, store_first,
                                 response.parsed)
    return response


class _ObservedResponse(Response):
    """Sends the relayed body first, then stores the answer, so the client never waits on it
    (with `store_first`, the other way round)."""

    def __init__(
        self,
        inner: RelayedResponse,
        on_answer: OnAnswer,
        decoder: _Decoder,
        reader: Reader,
        store_first: bool = False,
        parsed: dict[str, Any] | None = None,
    ) -> None:
        self.status_code = inner.status_code
        self.body = inner.body
        self.raw_headers = inner.raw_headers
        self.background = None
        self._on_answer = on_answer
        self._decoder = decoder
        self._reader = reader
        self._store_first = store_first
        self._parsed = parsed  # the relay's reading of the body, when it made one

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._store_first:
            await self._store()
            await super().__call__(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)
            await self._store()

    async def _store(self) -> None:
        parsed = self._parsed
        if parsed is None:
            try:
                parsed = orjson.loads(
                    self._decoder.feed(bytes(self.body)) + self._decoder.flush())
            except (orjson.JSONDecodeError, zlib.error):
                return
        if isinstance(parsed, dict):
            # A body that is not the dialect's answer reads as an error, and is not stored.
            await _deliver(self._reader.body(parsed), self._on_answer,
                           raising=self._store_first)


async def _tee(
    chunks: AsyncIterable[Any],
    on_answer: OnAnswer,
    content: _Decoder,
    accumulator: Accumulator,
    store_first: bool = False,
    *,
    failure: Callable[[MemoryUnavailable], bytes] | None = None,
) -> AsyncIterator[Any]:
    """The chunks relayed, a copy read; the answer stored once the stream has ended, or,
    with `store_first`, each chunk read before it is relayed and the answer stored before
    the chunk that finishes it (its finish_reason or [DONE]) goes out: when that fails, the
    stream ends with `failure(error)` instead (a chat stream's error event by default)."""
    decoder = SSEDecoder()
    broken = stored = False
    async for chunk in chunks:
        if not store_first:
            yield chunk
        if isinstance(chunk, bytes) and not (broken or stored):
            try:
                data = content.feed(chunk)
            except zlib.error:
                broken = True  # the client still gets every byte; only the copy is lost
                log.warning("relayed stream not stored: its compressed body is corrupt")
            else:
                for event in decoder.feed(data):
                    accumulator.feed_event(event)
                if store_first and accumulator.finished:
                    stored = True
                    try:
                        await _deliver(accumulator.result(), on_answer, raising=True)
                    except MemoryUnavailable as exc:
                        # Its end not sent: the client sees the stream fail, and retries.
                        yield (failure(exc) if failure is not None
                               else encode_data(exc.to_json()))
                        return
        if store_first:
            yield chunk
    if broken or stored:
        return
    if not accumulator.finished:
        # Cut, reset, or ended cleanly without finish_reason or [DONE]: the client saw the
        # stream end unfinished; a part of an answer must not be stored as the answer.
        log.warning("relayed stream not stored: it ended before a finish_reason or [DONE]")
        return
    await _deliver(accumulator.result(), on_answer)


async def _deliver(message: AssembledMessage, on_answer: OnAnswer, *, raising: bool = False
                   ) -> None:
    """`on_answer(message)`; a failure logged, or, with `raising` (the answer stored before
    the client gets it: a client that may never send it again), raised as
    MemoryUnavailable, so that the client is told and retries."""
    if message.error is not None:
        return
    try:
        await on_answer(message)
    except MemoryUnavailable:
        raise
    except Exception as exc:
        if raising:
            log.warning("storing a relayed answer failed: %s", exc)
            raise answer_not_stored() from exc
        # The client has its answer and resends it: a failed store write must not undo that.
        log_failure("storing a relayed answer failed")


# zlib's window bits per content-encoding ("" is none at all).
_WBITS = {"": 0, "identity": 0, "gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
          "deflate": zlib.MAX_WBITS}


def decoded(body: bytes, encoding: str) -> bytes | None:
    """A whole body in `encoding` ("" for none) decoded; None when it cannot be (an
    encoding the standard library cannot decode, or a corrupt body)."""
    if encoding not in _WBITS:
        return None
    decoder = _Decoder(encoding)
    try:
        return decoder.feed(body) + decoder.flush()
    except zlib.error:
        return None


def _content_encoding(response: Response) -> str:
    for name, value in response.raw_headers:
        if name == b"content-encoding":
            return value.decode("latin-1").strip().lower()
    return ""


class _Decoder:
    """Incremental decoding of one body. "deflate" is meant to be zlib-wrapped, but some
    servers send it raw: the first chunk decides, as browsers and httpx do."""

    def __init__(self, encoding: str) -> None:
        wbits = _WBITS[encoding]
        self._zlib = zlib.decompressobj(wbits) if wbits else None
        self._may_be_raw = wbits == zlib.MAX_WBITS

    def feed(self, chunk: bytes) -> bytes:
        if self._zlib is None:
            return chunk
        if self._may_be_raw:
            self._may_be_raw = False
            try:
                return self._zlib.decompress(chunk)
            except zlib.error:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._zlib.decompress(chunk)

    def flush(self) -> bytes:
        return self._zlib.flush() if self._zlib is not None else b""
