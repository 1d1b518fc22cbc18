"""The fault loop for `stream: true`: several upstream streams, one client stream.

Text reaches the client as the upstream sends it. An iteration that turns out to be VM
tool calls is consumed silently, resolved, and the next iteration continues the same
client stream: one id, one role chunk, one finish_reason, one usage chunk (when asked for),
one `[DONE]`. SSE comments keep the connection alive while faults resolve. When the
client goes away the response is cancelled, which closes the upstream stream in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx

from proxy.errors import MemoryUnavailable, ProxyError, UpstreamError
from proxy.logs import log
from proxy.loop.citations import CitationStripper
from proxy.loop.splitter import StreamSplitter
from proxy.loop.turn import Turn
from proxy.store import StoreError
from proxy.upstream.client import Reply, error_for_transport_failure, error_from_status
from proxy.upstream.headers import content_type
from proxy.upstream.sse import DONE, SSEDecoder, SSEEvent, encode_comment, encode_data, encode_error
from proxy.upstream.usage import Usage, add_usage

KEEPALIVE = encode_comment("keep-alive")


class OpenedStream:
    """The first upstream stream, opened before the client's response starts so that an
    upstream refusal (401, 404, 429 ...) reaches the client as that status."""

    def __init__(self, stack: AsyncExitStack, reply: Reply) -> None:
        self.stack = stack
        self.reply = reply


async def open_first(turn: Turn, body: dict[str, Any]) -> OpenedStream:
    stack = AsyncExitStack()
    try:
        reply = await _open(turn, stack, body)
    except BaseException:
        await stack.aclose()
        raise
    return OpenedStream(stack, reply)


async def _open(turn: Turn, stack: AsyncExitStack, body: dict[str, Any]) -> Reply:
    turn.record_upstream_prompt(body)
    started = time.perf_counter()
    reply = await stack.enter_async_context(
        turn.upstream.stream("/chat/completions", body, turn.headers)
    )
    turn.note_reply(reply.raw_headers, time.perf_counter() - started)
    if reply.status_code >= 400:
        raise error_from_status(
            reply.status_code, await reply.read_decoded(), reply.raw_headers
        )
    kind = content_type(reply.raw_headers)
    if kind and not kind.startswith("text/event-stream"):
        # An HTML page (a captive portal, a misrouted proxy) or a JSON body is not the
        # stream that was asked for: an empty answer must not pass for one.
        start = (await reply.read_decoded())[:300].decode("utf-8", "replace")
        raise UpstreamError(
            f"The upstream answered a streaming request with {kind}, not an event stream: "
            f"{start!r}",
            code="invalid_response",
        )
    return reply


async def stream_events(
    turn: Turn, body: dict[str, Any], opened: OpenedStream
) -> AsyncIterator[bytes]:
    """The client's SSE body. `opened` is the first iteration's upstream stream."""
    stack, reply = opened.stack, opened.reply
    citations = CitationStripper(citations=turn.strip_citations)
    usage: Usage | None = None
    role_sent = False
    next_client_index = 0
    model: str | None = None
    try:
        for iteration in range(turn.max_iterations):
            splitter = StreamSplitter(
                turn.vm_tool_names,
                client_stream_id=turn.stream_id,
                created=turn.created,
                model=model,
                include_usage=turn.client_wants_usage,
                first_iteration=not role_sent,
                next_client_tool_index=next_client_index,
                citations=citations,
                id_salt=f"{turn.salt}/{iteration}",
            )
            async for piece in _relay(turn, reply, splitter):
                yield piece
            for piece in _split_end(turn, splitter):
                yield piece
            await stack.aclose()
            outcome = splitter.outcome()
            role_sent = splitter.role_sent
            next_client_index = splitter.next_client_tool_index
            model = splitter.model or model
            usage = add_usage(usage, outcome.usage)
            if outcome.error is not None:
                yield encode_error(**_error_fields(outcome.error))
                return
            if not splitter.accumulator.finished:
                # Cut, reset, or a clean end without finish_reason or [DONE]: what came is
                # not the answer, so the client is told and nothing is stored (issue 13).
                log.warning("upstream stream ended unfinished", extra={"turn": turn.turn_number})
                yield encode_error(
                    "The upstream stream ended before the answer was complete.",
                    error_type=UpstreamError.error_type,
                    code="upstream_stream_incomplete",
                )
                return
            results: list[dict[str, Any]] = []
            if outcome.vm_calls:
                resolving = asyncio.ensure_future(turn.resolve(outcome.vm_calls))
                async for piece in _while_waiting(turn, resolving):
                    yield piece
                results = resolving.result()
            following = turn.body_after(
                iteration, body, outcome.message, outcome.vm_calls, outcome.client_calls, results
            )
            if following is not None:
                body = following
                stack = AsyncExitStack()
                opening = asyncio.ensure_future(_open(turn, stack, body))
                async for piece in _while_waiting(turn, opening):
                    yield piece
                reply = opening.result()
                continue
            finish = "tool_calls" if outcome.client_calls else (outcome.finish_reason or "stop")
            if finish == "tool_calls" and not outcome.client_calls:
                finish = "stop"
            yield encode_data(splitter.finish_chunk(finish))
            if turn.client_wants_usage:
                yield encode_data(splitter.usage_chunk(usage))
            if citations is not None:
                turn.note_citations(citations.ids)
            await turn.finish(turn.shown_text(), outcome.client_calls)
            yield encode_comment(turn.summary_comment())
            yield DONE
            return
    except (ProxyError, StoreError) as exc:
        error = exc if isinstance(exc, ProxyError) else MemoryUnavailable(str(exc))
        yield encode_error(
            error.message, error_type=error.error_type, code=error.code, param=error.param
        )
    except Exception:
        # The client was told 200 already, so failing open is no longer possible: end the
        # stream with an error event the SDKs raise on, never a truncated body.
        log.exception("the streaming fault loop failed")
        yield encode_error(
            "The proxy failed while answering; the request may be retried.",
            error_type="server_error",
            code="vm_stream_failed",
        )
    finally:
        await stack.aclose()


def _split_end(turn: Turn, splitter: StreamSplitter) -> list[bytes]:
    """What the splitter still owes once an upstream response ends (a held citation tail)."""
    out: list[bytes] = []
    for chunk in splitter.end():
        turn.note_shown(chunk)
        out.append(encode_data(chunk))
    return out


async def _relay(
    turn: Turn, reply: Reply, splitter: StreamSplitter
) -> AsyncIterator[bytes]:
    """Relay one upstream stream through `splitter`, with keep-alives while it is silent."""
    decoder = SSEDecoder()
    chunks = reply.aiter_decoded()
    reading: asyncio.Future[bytes | None] | None = None
    try:
        while True:
            if reading is None:
                reading = asyncio.ensure_future(_anext_or_none(chunks))
            done, _ = await asyncio.wait({reading}, timeout=turn.keepalive_s)
            if not done:
                yield KEEPALIVE
                continue
            raw, reading = reading.result(), None
            if raw is None:
                break
            for chunk in _split(turn, splitter, decoder.feed(raw)):
                yield chunk
        for chunk in _split(turn, splitter, decoder.flush()):
            yield chunk
    except httpx.TransportError as exc:
        raise error_for_transport_failure(exc, turn.upstream.base_url, replying=True) from exc
    finally:
        if reading is not None and not reading.done():
            reading.cancel()


def _split(turn: Turn, splitter: StreamSplitter, events: list[SSEEvent]) -> list[bytes]:
    out: list[bytes] = []
    for event in events:
        # [DONE] too: the splitter notes it (a stream without it or a finish is unfinished).
        for chunk in splitter.feed_event(event):
            turn.note_shown(chunk)
            out.append(encode_data(chunk))
    return out


async def _anext_or_none(chunks: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None


async def _while_waiting(turn: Turn, task: asyncio.Future[Any]) -> AsyncIterator[bytes]:
    """SSE comments every `keepalive_s` until `task` is done; left early, it cancels it."""
    try:
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=turn.keepalive_s)
            if not done:
                yield KEEPALIVE
    finally:
        if not task.done():
            task.cancel()


def _error_fields(error: dict[str, Any]) -> dict[str, Any]:
    code = error.get("code")
    return {
        "message": str(error.get("message") or "upstream error"),
        "error_type": str(error.get("type") or UpstreamError.error_type),
        "code": None if code is None else str(code),
        "param": error.get("param"),
    }
