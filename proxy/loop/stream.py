"""The fault loop for `stream: true`: several upstream streams, one client stream.

Text reaches the client as the upstream sends it. An iteration that turns out to be VM
tool calls is consumed silently, resolved, and the next iteration continues the same
client stream: one id, one role chunk, one finish_reason, one usage chunk (when asked for),
one `[DONE]`. SSE comments keep the connection alive while faults resolve, and while the
upstream writes what the client does not get (not while the upstream itself is silent:
see `_relay`). When the client goes away the response is cancelled, which closes the
upstream stream in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, Protocol

import httpx

from proxy.errors import MemoryUnavailable, ProxyError, UpstreamError
from proxy.logs import log
from proxy.loop.citations import CitationStripper
from proxy.loop.splitter import IterationOutcome, StreamSplitter
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


class StreamIteration(Protocol):
    """One upstream stream split into client bytes now and what the loop keeps."""

    def feed(self, event: SSEEvent) -> list[bytes]: ...

    def end(self) -> list[bytes]:
        """What is still owed to the client once the upstream stream ends."""

    def outcome(self) -> IterationOutcome: ...

    @property
    def finished(self) -> bool:
        """The upstream said its answer is complete (a finish, [DONE], an error)."""


class StreamDialect(Protocol):
    """What differs between the client dialects (chat completions, Responses) of one
    streaming loop: how an upstream stream is opened and split, and how the client's
    stream ends. The loop itself (stream_events) is shared."""

    async def open(self, turn: Turn, stack: AsyncExitStack, body: dict[str, Any]) -> Reply: ...

    def iteration(self, iteration: int) -> StreamIteration: ...

    async def close(self, outcome: IterationOutcome, usage: Usage | None) -> list[bytes]:
        """The client stream's last bytes, once the turn's answer is stored."""

    def fail(self, error: dict[str, Any]) -> list[bytes]:
        """The client stream's last bytes after an error (OpenAI-shaped `error`)."""


async def open_first(
    turn: Turn, body: dict[str, Any], dialect: StreamDialect | None = None
) -> OpenedStream:
    stack = AsyncExitStack()
    try:
        if dialect is None:
            reply = await open_chat(turn, stack, body)
        else:
            reply = await dialect.open(turn, stack, body)
    except BaseException:
        await stack.aclose()
        raise
    return OpenedStream(stack, reply)


async def open_stream(
    turn: Turn, stack: AsyncExitStack, path: str, body: dict[str, Any]
) -> Reply:
    turn.note_sent(path, body)
    started = time.perf_counter()
    reply = await stack.enter_async_context(turn.upstream.stream(path, body, turn.headers))
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


async def open_chat(turn: Turn, stack: AsyncExitStack, body: dict[str, Any]) -> Reply:
    turn.record_upstream_prompt(body)
    return await open_stream(turn, stack, "/chat/completions", body)


class ChatStream:
    """The chat-completions dialect: chunks split by StreamSplitter, one finish chunk, the
    usage chunk when asked for, an SSE comment with the totals and `[DONE]`."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        # Page labels a model copies are stripped in every mode; citations in strict mode.
        self.citations = CitationStripper(citations=turn.strip_citations)
        self._splitter: StreamSplitter | None = None

    async def open(self, turn: Turn, stack: AsyncExitStack, body: dict[str, Any]) -> Reply:
        return await open_chat(turn, stack, body)

    def iteration(self, iteration: int) -> StreamIteration:
        turn, before = self.turn, self._splitter
        self._splitter = StreamSplitter(
            turn.vm_tool_names,
            client_stream_id=turn.stream_id,
            created=turn.created,
            model=before.model if before is not None and before.model else None,
            include_usage=turn.client_wants_usage,
            first_iteration=before is None or not before.role_sent,
            next_client_tool_index=0 if before is None else before.next_client_tool_index,
            citations=self.citations,
            id_salt=f"{turn.salt}/{iteration}",
        )
        return _ChatIteration(turn, self._splitter)

    async def close(self, outcome: IterationOutcome, usage: Usage | None) -> list[bytes]:
        turn, splitter = self.turn, self._splitter
        assert splitter is not None
        finish = "tool_calls" if outcome.client_calls else (outcome.finish_reason or "stop")
        if finish == "tool_calls" and not outcome.client_calls:
            finish = "stop"
        out = [encode_data(splitter.finish_chunk(finish))]
        if turn.client_wants_usage:
            out.append(encode_data(splitter.usage_chunk(usage)))
        if self.citations is not None:
            turn.note_citations(self.citations.ids)
        await turn.finish(
            turn.shown_text(), outcome.client_calls, refusal=turn.shown_refusal_text()
        )
        out.append(encode_comment(turn.summary_comment()))
        out.append(DONE)
        return out

    def fail(self, error: dict[str, Any]) -> list[bytes]:
        return [encode_error(**_error_fields(error))]


class _ChatIteration:
    def __init__(self, turn: Turn, splitter: StreamSplitter) -> None:
        self.turn = turn
        self.splitter = splitter

    def feed(self, event: SSEEvent) -> list[bytes]:
        # [DONE] too: the splitter notes it (a stream without it or a finish is unfinished).
        out: list[bytes] = []
        for chunk in self.splitter.feed_event(event):
            self.turn.note_shown(chunk)
            out.append(encode_data(chunk))
        return out

    def end(self) -> list[bytes]:
        """What the splitter still owes once an upstream response ends (a held citation
        tail, arguments of calls that got none)."""
        out: list[bytes] = []
        for chunk in self.splitter.end():
            self.turn.note_shown(chunk)
            out.append(encode_data(chunk))
        return out

    def outcome(self) -> IterationOutcome:
        return self.splitter.outcome()

    @property
    def finished(self) -> bool:
        return self.splitter.accumulator.finished


async def stream_events(
    turn: Turn,
    body: dict[str, Any],
    opened: OpenedStream,
    dialect: StreamDialect | None = None,
) -> AsyncIterator[bytes]:
    """The client's SSE body. `opened` is the first iteration's upstream stream."""
    dialect = ChatStream(turn) if dialect is None else dialect
    stack, reply = opened.stack, opened.reply
    usage: Usage | None = None
    try:
        for iteration in range(turn.max_iterations):
            split = dialect.iteration(iteration)
            async for piece in _relay(turn, reply, split):
                yield piece
            for piece in split.end():
                yield piece
            await stack.aclose()
            outcome = split.outcome()
            usage = add_usage(usage, outcome.usage)
            if outcome.error is not None:
                for piece in dialect.fail(outcome.error):
                    yield piece
                return
            if not split.finished:
                # Cut, reset, or a clean end without finish_reason or [DONE]: what came is
                # not the answer, so the client is told and nothing is stored (issue 13).
                log.warning("upstream stream ended unfinished", extra={"turn": turn.turn_number})
                for piece in dialect.fail({
                    "message": "The upstream stream ended before the answer was complete.",
                    "type": UpstreamError.error_type, "code": "upstream_stream_incomplete",
                    "param": None,
                }):
                    yield piece
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
                opening = asyncio.ensure_future(dialect.open(turn, stack, body))
                async for piece in _while_waiting(turn, opening):
                    yield piece
                reply = opening.result()
                continue
            for piece in await dialect.close(outcome, usage):
                yield piece
            return
    except (ProxyError, StoreError) as exc:
        error = exc if isinstance(exc, ProxyError) else MemoryUnavailable(str(exc))
        for piece in dialect.fail(error.to_dict()["error"]):
            yield piece
    except Exception:
        # The client was told 200 already, so failing open is no longer possible: end the
        # stream with an error event the SDKs raise on, never a truncated body.
        log.exception("the streaming fault loop failed")
        for piece in dialect.fail({
            "message": "The proxy failed while answering; the request may be retried.",
            "type": "server_error", "code": "vm_stream_failed", "param": None,
        }):
            yield piece
    finally:
        await stack.aclose()


async def _relay(
    turn: Turn, reply: Reply, split: StreamIteration
) -> AsyncIterator[bytes]:
    """Relay one upstream stream through `split`, up to its `[DONE]` (what an upstream sends
    after it, or how late it closes, is not waited for, as openai-python does not).

    Keep-alives go out only while the client hears nothing because of the proxy: the
    upstream is sending what the client does not get (a VM call being written). A silence
    of the upstream's own reaches the client as silence, so that its read timeout fires as
    it would without the proxy (a keep-alive would hold it off until upstream.timeout_s)."""
    decoder = SSEDecoder()
    chunks = reply.aiter_decoded()
    reading: asyncio.Future[bytes | None] | None = None
    keepalive_s = turn.keepalive_s
    last_sent = time.monotonic()  # when the client last got a byte of this stream
    withheld = False  # the upstream sent something since then
    try:
        while True:
            if reading is None:
                reading = asyncio.ensure_future(_anext_or_none(chunks))
            done, _ = await asyncio.wait({reading}, timeout=keepalive_s)
            if not done:
                if withheld:
                    withheld = False
                    last_sent = time.monotonic()
                    yield KEEPALIVE
                continue
            raw, reading = reading.result(), None
            if raw is None:
                break
            sent = ended = False
            for event in decoder.feed(raw):
                for piece in split.feed(event):
                    sent = True
                    yield piece
                if event.is_done:
                    ended = True
                    break
            now = time.monotonic()
            if sent:
                withheld, last_sent = False, now
            elif now - last_sent >= keepalive_s:
                withheld, last_sent = False, now
                yield KEEPALIVE
            else:
                withheld = True
            if ended:
                return
        for event in decoder.flush():
            for piece in split.feed(event):
                yield piece
    except httpx.TransportError as exc:
        raise error_for_transport_failure(exc, turn.upstream.base_url, replying=True) from exc
    finally:
        if reading is not None and not reading.done():
            reading.cancel()


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
