"""`POST /v1/chat/completions` once validated: pass through, or run the fault loop.

The order of decisions: the mode (`off` is a pure pass-through that stores nothing); the
tenant and the conversation, with the new messages stored; then whether the full prompt is
over `vm.activate_above`. Below it the request is relayed unchanged and the answer is
stored on the way back; above it the request is rebuilt around the working set and the
fault loop answers. An unexpected failure in the memory path (a bug, the store
unreachable) falls back to the plain pass-through when `vm.fail_open` is on, unless the
request may hold only a session's new messages: that is a 503 to retry, not an answer
without the conversation. Errors of the client or the upstream are answered as such.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy.config import VMSettings
from proxy.errors import MemoryUnavailable, ProxyError
from proxy.logs import log, request_stats
from proxy.loop.failures import log_failure
from proxy.loop.nonstream import run_complete
from proxy.loop.observe import observe
from proxy.loop.placement import cut_path
from proxy.loop.policy import (
    credential,
    refuse_anonymous,
    relayed_whole,
    request_mode,
    request_tenant,
    session_name,
)
from proxy.loop.prefix_cache import short_fingerprints
from proxy.loop.prepare import Prepared, prepare
from proxy.loop.services import AppServices
from proxy.loop.short_chat import SameTurn, ShortTurn, same_again, short_turn
from proxy.loop.stored_rows import forked, held_on_a_fork
from proxy.loop.stream import open_first, stream_events
from proxy.loop.tip_claims import Claim, Tip
from proxy.loop.turn import Turn, answer_message, resent_fields
from proxy.loop.turn_log import observe_turn
from proxy.metrics import Metrics
from proxy.upstream.assemble import AssembledMessage
from proxy.upstream.headers import set_headers
from proxy.upstream.relay import relay_chat

JSON = "application/json"


async def handle_chat(
    state: AppServices, request: Request, body: dict[str, Any], raw: bytes
) -> Response:
    settings = state.settings
    mode = request_mode(settings.vm.mode, request.headers, body)
    session = session_name(request.headers)
    if mode == "off":
        return await relay_chat(state.upstream, request, raw, stream=body.get("stream") is True,
                                whole=False)
    if settings.tenant.require_credential and credential(request.headers) is None:
        raise refuse_anonymous()
    # Taken on once the store can take its writes (a writer behind makes it wait here).
    await state.store.room()
    tenant = request_tenant(request.headers, settings.tenant.secret, settings.tenant.default)
    if session is None:
        started = time.perf_counter()
        fingerprints = None
        short: ShortTurn | SameTurn | None
        try:
            short = same_again(state, request, body, raw, tenant)
            if short is None:
                # Made once: the short chat's placement and the general one both align by
                # them.
                fingerprints = short_fingerprints(body["messages"])
                short = await short_turn(state, request, body, tenant, fingerprints, raw)
        except Exception:
            # A bug: the general path decides (and fails open, or not) as it would have.
            log_failure("placing a short chat's turn failed; placing it the general way")
            short = None
        if short is not None:
            _observe_prepare(state.metrics, started)
            if isinstance(short, SameTurn):
                return await _answer_again(state, request, raw, short)
            return await _answer_short(state, request, raw, short,
                                       stream=body.get("stream") is True)
        return await _answer(state, request, body, raw, tenant=tenant, session=None, mode=mode,
                             fingerprints=fingerprints)
    # One turn of a session at a time (in this process): two at once would each chain their
    # message onto the tip the other has not seen yet, and one of the answers would land on
    # a fork the session no longer names.
    held = AsyncExitStack()
    await held.enter_async_context(state.session_locks.hold((tenant, session)))
    try:
        response = await _answer(
            state, request, body, raw, tenant=tenant, session=session, mode=mode
        )
    except BaseException:
        await held.aclose()
        raise
    return SentThen(response, held.aclose,
                    sent=functools.partial(state.deliveries.note, tenant, session))


async def _answer(
    state: AppServices,
    request: Request,
    body: dict[str, Any],
    raw: bytes,
    *,
    tenant: str,
    session: str | None,
    mode: str,
    fingerprints: list[int] | None = None,
) -> Response:
    settings = state.settings
    started = time.perf_counter()
    try:
        prepared = await prepare(state, request, body, tenant=tenant, session=session, mode=mode,
                                 fingerprints=fingerprints)
    except Exception as exc:
        if not fails_open(settings.vm, exc):
            raise
        # Without a placement it is unknown whether the request holds the whole history:
        # under a session name it may hold only the new messages.
        return await _fail_open(state, request, raw, "VM preparation failed",
                                whole=session is None, stream=body.get("stream") is True)
    _observe_prepare(state.metrics, started)
    if prepared.turn is None:
        if prepared.forward_body is not None:
            raw = orjson.dumps(prepared.forward_body)
        tip = await _claim_held_tip(state, prepared)
        return await _relay_storing(
            state, request, raw, prepared.headers(), _extend_with(prepared),
            prepared.answer_name, functools.partial(_store_held_then, state, prepared, tip),
            # Under a session name the client may never resend the answer: stored before
            # it is sent.
            store_first=prepared.session is not None, stream=body.get("stream") is True,
        )
    turn = prepared.turn
    turn.stats = request_stats(request.scope)
    state.metrics.counter("vm_turns_total", help="Requests answered with virtual memory").inc()
    first_body = turn.first_body()
    tip = None if relayed_whole(body) else await _claim_tip(state, prepared, turn)
    if tip is not None:
        try:
            response = await _run_turn(state, request, body, raw, prepared, first_body)
        except BaseException:
            state.tips.release(tip)
            raise
        return SentThen(response, functools.partial(_release, state, tip))
    return await _run_turn(state, request, body, raw, prepared, first_body)


async def _claim_held_tip(state: AppServices, prepared: Prepared) -> Tip | None:
    """The tip a whole-history request's held messages go on (with its answer), claimed
    (loop.tip_claims); held beside another request in flight (the same history with
    another question, sent at once), they go on a fork of their own from there, which the
    response names."""
    held = prepared.conversations.held
    if prepared.session is not None or held is None:
        return None

    async def fork() -> None:
        moved = await held_on_a_fork(state.store, prepared.tenant, held)
        prepared.conversations.hold_instead(moved)
        prepared.placement = dataclasses.replace(
            prepared.placement, leaf=moved.row(), path=cut_path(moved.path, moved.end),
            leaf_path=moved.path,
        )

    tip = (prepared.tenant, held.target.conv_id, held.anchor + 1)
    return await _claim(state, tip, prepared.placement.offset + prepared.placement.length, fork)


async def _store_held_then(state: AppServices, prepared: Prepared, tip: Tip | None) -> None:
    """`store_held`, then the tip released (the answer, when one came, stored before)."""
    try:
        await store_held(prepared)
    finally:
        if tip is not None:
            state.tips.release(tip)


async def _claim_tip(state: AppServices, prepared: Prepared, turn: Turn) -> Tip | None:
    """The tip a whole-history memory turn's answer goes on, claimed (loop.tip_claims); a
    turn placed on a tip another turn in flight holds (the same history sent twice at once)
    goes on a fork of its own from there, which its response names: streamed, its headers
    leave before its answer is stored."""
    if prepared.session is not None:
        return None  # one turn of a session at a time (session_locks)
    placement = turn.placement

    async def fork() -> None:
        turn.placement = await forked(state.store, prepared.tenant, placement, durable=False)

    length = placement.offset + placement.length
    return await _claim(state, (prepared.tenant, placement.leaf.conv_id, length), length, fork)


async def _claim(
    state: AppServices, tip: Tip, messages: int, fork: Callable[[], Awaitable[None]]
) -> Tip | None:
    """`tip`, when the request of `messages` messages holds it now; a rival's request moved
    by `fork()` onto a fork of its own; None unless held (loop.tip_claims)."""
    claim = state.tips.claim(tip, messages)
    if claim is Claim.HELD:
        return tip
    if claim is Claim.RIVAL:
        try:
            await fork()
        except Exception:  # placed as before claims: its append finds whose the tip is
            log.exception("forking a request's conversation failed; placed on it as it is")
    return None


async def _release(state: AppServices, tip: Tip) -> None:
    state.tips.release(tip)


async def _run_turn(
    state: AppServices,
    request: Request,
    body: dict[str, Any],
    raw: bytes,
    prepared: Prepared,
    first_body: dict[str, Any],
) -> Response:
    """The memory turn of a prepared request, answered (the client's `body`)."""
    turn = prepared.turn
    assert turn is not None
    settings = state.settings
    if relayed_whole(body):
        # Runs passive (no loop): one upstream call with the packed prompt, relayed as the
        # upstream answers it (every choice, a function_call, audio); choice 0 is stored.
        packed = dict(first_body)
        packed.pop("stream_options", None)
        if "stream_options" in body:
            packed["stream_options"] = body["stream_options"]
        turn.record_upstream_prompt(packed)
        response = await relay_chat(state.upstream, request, orjson.dumps(packed),
                                    stream=body.get("stream") is True)
        return _observed_passthrough(
            response, turn.response_headers(final=True), _extend_with(prepared),
            prepared.answer_name, store_first=prepared.session is not None,
        )
    if body.get("stream") is True:
        opened = await open_first(turn, first_body)
        return StreamingResponse(
            counted(stream_events(turn, first_body, opened), turn, state.metrics),
            media_type="text/event-stream",
            headers=turn.response_headers(final=False),
        )
    try:
        answer = await run_complete(turn, first_body)
    except Exception as exc:
        if not fails_open(settings.vm, exc):
            raise
        return await _fail_open(
            state, request, raw, "the fault loop failed", whole=not prepared.placement.appended,
            stream=False,
        )
    count_turn(state.metrics, turn)
    return Response(
        orjson.dumps(answer), media_type=JSON, headers=turn.response_headers(final=True)
    )


def _observe_prepare(metrics: Metrics, started: float) -> None:
    metrics.histogram(
        "vm_prepare_seconds", help="Time to place, store and pack one request"
    ).observe(time.perf_counter() - started)


async def _answer_short(
    state: AppServices, request: Request, raw: bytes, short: ShortTurn, *, stream: bool
) -> Response:
    """The next turn of a short chat (proxy.loop.short_chat): relayed as it is, its new
    messages stored with its answer once it is sent, or alone when no answer comes."""

    async def store_alone() -> None:
        if short.stored:
            return  # the common case (stored with its answer): no task to shield
        try:
            await asyncio.shield(short.store(None))
        except Exception:
            log.exception("storing a request's messages failed")

    return await _relay_storing(
        state, request, raw, short.headers(), short.store, short.answer_name, store_alone,
        stream=stream,
    )


async def _answer_again(
    state: AppServices, request: Request, raw: bytes, again: SameTurn
) -> Response:
    """The same request again (proxy.loop.short_chat.SameTurn): relayed as it is, its
    answer placed before the response goes out, which names the conversation it is on."""
    relayed = await relay_chat(state.upstream, request, raw,
                               stream=again.body.get("stream") is True)

    async def place(answer: dict[str, Any]) -> None:
        named = again.conv_id
        if await again.place(answer) != named:
            set_headers(relayed.raw_headers, {"x-vm-session": again.conv_id})

    return _observed_passthrough(
        relayed, again.headers(), place, again.answer_name, store_first=True
    )


async def _relay_storing(
    state: AppServices,
    request: Request,
    raw: bytes,
    headers: dict[str, str],
    store: StoreAnswer,
    answer_name: str,
    then: Callable[[], Awaitable[object]],
    *,
    store_first: bool = False,
    stream: bool,
) -> Response:
    """`raw` relayed as it is, with `headers`; its answer given to `store`; `then()` once
    the response is sent or abandoned, or the relay failed (what is still held stored)."""
    try:
        relayed = await relay_chat(state.upstream, request, raw, stream=stream)
    except BaseException:
        await then()
        raise
    return SentThen(
        _observed_passthrough(relayed, headers, store, answer_name, store_first=store_first),
        then,
    )


def fails_open(settings: VMSettings, exc: Exception) -> bool:
    """Client and upstream errors are answers in their own right; any other failure of the
    memory path (a bug, the store unreachable) is answered without memory when
    `vm.fail_open` is on."""
    return settings.fail_open and not isinstance(exc, ProxyError)


async def answer_without_memory(
    state: AppServices, what: str, relay_whole: Callable[[], Awaitable[Response]], *,
    whole: bool, held: str = "messages of its X-VM-Session",
) -> Response:
    """The memory path failed (`what`): relay the request as it is when it holds the
    whole conversation, else a retryable error: forwarded alone, the request's new `held`
    would be answered without the conversation and nobody would know."""
    if not whole:
        log_failure("%s; not answered without memory: the request holds only the new %s",
                      what, held)
        raise MemoryUnavailable(
            "The conversation memory is unavailable; retry the request.",
            code="memory_unavailable",
        )
    log_failure("%s; answering as a pass-through (vm.fail_open)", what)
    state.metrics.counter("vm_fail_open_total", help="VM failures answered as pass-through").inc()
    return await relay_whole()


async def _fail_open(
    state: AppServices, request: Request, raw: bytes, what: str, *, whole: bool, stream: bool
) -> Response:
    return await answer_without_memory(
        state, what, functools.partial(relay_chat, state.upstream, request, raw, stream=stream),
        whole=whole,
    )


def count_turn(metrics: Metrics, turn: Turn) -> None:
    observe_turn(metrics, turn.log, faults=turn.faults, searches=turn.resolver.searches,
                 sent=turn.prompt_tokens_sent, full=turn.prompt_tokens_full)  # fmt: skip
    metrics.counter("vm_faults_total", help="Page faults answered").inc(turn.faults)
    metrics.counter("vm_citations_total", help="Citations stripped from answers").inc(
        len(turn.citations)
    )
    metrics.counter("vm_prompt_tokens_sent_total", help="Prompt tokens sent upstream").inc(
        turn.prompt_tokens_sent
    )
    metrics.counter(
        "vm_prompt_tokens_full_total", help="Prompt tokens the full histories would cost"
    ).inc(turn.prompt_tokens_full)


async def counted(
    events: AsyncIterator[bytes], turn: Turn, metrics: Metrics
) -> AsyncIterator[bytes]:
    """A stream's turn is counted once it ends (its faults happen while it runs)."""
    try:
        async for event in events:
            yield event
    finally:
        count_turn(metrics, turn)


# Stores a relayed answer, as the client will resend it.
StoreAnswer = Callable[[dict[str, Any]], Awaitable[object]]


def _extend_with(prepared: Prepared) -> StoreAnswer:
    """Stores an answer after the request's placed messages."""

    async def extend(answer: dict[str, Any]) -> None:
        await prepared.conversations.extend(prepared.tenant, prepared.placement, [answer])

    return extend


def _observed_passthrough(
    response: Response, headers: dict[str, str], store: StoreAnswer, answer_name: str, *,
    store_first: bool,
) -> Response:
    """Relay an upstream answer as it is; store it (choice 0) when it is complete."""

    async def store_answer(message: AssembledMessage) -> None:
        # As the client will resend it: its content as the upstream sent it.
        content = message.content if message.parts is None else message.parts
        await store(answer_message(content, message.tool_calls, answer_name,
                                   refusal=message.refusal,
                                   extra=resent_fields(message.message_extra)))

    set_headers(response.raw_headers, headers)
    return observe(response, store_answer, store_first=store_first)


async def store_held(prepared: Prepared) -> None:
    """The request's messages held for its answer (proxy.loop.held), stored alone: the
    answer was not stored (an error, a cut stream, the client gone). Shielded: a client
    that goes away must not cancel the write."""
    if prepared.conversations.held is None:
        return  # the common case (the answer stored them, or none were held): no task
    try:
        await asyncio.shield(prepared.conversations.flush(prepared.tenant))
    except Exception:
        log.exception("storing a request's messages failed")


class SentThen(Response):
    """`inner`, then `then()` once it is sent (a stream's last byte, a relayed answer
    stored after it went out), or abandoned by the client: what of its request is still
    held stored, a session's lock released. `sent()` before that, only when it was sent
    whole."""

    def __init__(
        self,
        inner: Response,
        then: Callable[[], Awaitable[object]],
        sent: Callable[[], None] | None = None,
    ) -> None:
        self.inner = inner
        self.status_code = inner.status_code
        self.background = None
        self._then = then
        self._sent = sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
            if self._sent is not None:
                self._sent()
        finally:
            await self._then()

