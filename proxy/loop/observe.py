"""A pass-through that still builds memory: the reply is relayed untouched while a copy is
assembled, and stored as a page once complete (a client that sends only new messages under
`X-VM-Session` never resends it, so the proxy must keep it)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import Response

from proxy.assemble import AssembledMessage, ChunkAccumulator, assemble_response
from proxy.logs import log
from proxy.passthrough import RelayedResponse, RelayedStream
from proxy.sse import SSEDecoder

OnAnswer = Callable[[AssembledMessage], Awaitable[None]]


def observe(response: Response, on_answer: OnAnswer) -> Response:
    """Call `on_answer` with the assembled reply of a relayed 2xx chat completion."""
    if response.status_code >= 300 or _encoded(response):
        return response
    if isinstance(response, RelayedStream):
        response.body_iterator = _tee(response.body_iterator, on_answer)
        return response
    if isinstance(response, RelayedResponse):
        return _ObservedResponse(response, on_answer)
    return response


class _ObservedResponse(Response):
    """Sends the relayed body first, then stores the answer, so the client never waits on it."""

    def __init__(self, inner: RelayedResponse, on_answer: OnAnswer) -> None:
        self.status_code = inner.status_code
        self.body = inner.body
        self.raw_headers = inner.raw_headers
        self.background = None
        self._on_answer = on_answer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await super().__call__(scope, receive, send)
        try:
            parsed = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return
        if isinstance(parsed, dict):
            await _deliver(assemble_response(parsed), self._on_answer)


async def _tee(chunks: AsyncIterable[Any], on_answer: OnAnswer) -> AsyncIterator[Any]:
    decoder = SSEDecoder()
    accumulator = ChunkAccumulator()
    async for chunk in chunks:
        yield chunk
        if isinstance(chunk, bytes):
            for event in decoder.feed(chunk):
                accumulator.feed_event(event)
    await _deliver(accumulator.result(), on_answer)


async def _deliver(message: AssembledMessage, on_answer: OnAnswer) -> None:
    if message.error is not None:
        return
    try:
        await on_answer(message)
    except Exception:  # the client has its answer; a failed store write must not undo that
        log.exception("storing a relayed answer failed")


def _encoded(response: Response) -> bool:
    return any(name == b"content-encoding" for name, _ in response.raw_headers)
