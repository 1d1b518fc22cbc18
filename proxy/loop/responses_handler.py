"""`POST /v1/responses` once validated: the same memory as chat completions.

The order of decisions follows handler.py: the mode (`off`, and requests memory cannot
serve, are relayed as they are); the tenant; `previous_response_id`, which names where an
earlier answer of the proxy (or one relayed through it) ended, so that the request's input
is appended there; the request made a chat body (responses_adapter) and placed, stored and
packed by the same core. Below `vm.activate_above` a native upstream gets the request as
it is (its input rebuilt from the store when the request held only the new items) and the
answer is stored on the way back; a chat upstream gets it translated, without VM tools.
Above it the memory turn runs on the shared loop (responses_turn, responses_stream).
"""

from __future__ import annotations

import asyncio
import functools
import time
from contextlib import AsyncExitStack
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from proxy.errors import InvalidRequest
from proxy.logs import log, request_stats
from proxy.loop.handler import (
    SentThen,
    answer_without_memory,
    count_turn,
    counted,
    fails_open,
    store_held,
)
from proxy.loop.observe import Reader, observe
from proxy.loop.policy import (
    credential,
    refuse_anonymous,
    request_mode,
    request_tenant,
    session_name,
)
from proxy.loop.prepare import Prepared, prepare
from proxy.loop.resolver import FaultResolver
from proxy.loop.responses_adapter import chat_body, not_servable
from proxy.loop.responses_echo import echo_previous
from proxy.loop.responses_stream import ResponsesStream
from proxy.loop.responses_turn import ResponsesTurn, remember_unwritten
from proxy.loop.services import AppServices
from proxy.loop.stream import open_first, stream_events
from proxy.loop.turn import Turn
from proxy.store.base import PageStore
from proxy.tokens import counter_for_model
from proxy.upstream.assemble import AssembledMessage
from proxy.upstream.headers import set_headers
from proxy.upstream.relay import expected, relay
from proxy.upstream.responses import EventAccumulator, ItemsMessage, read_response
from proxy.upstream.responses_format import (
    assistant_message,
    input_items,
    instructions_of,
    with_instructions,
)
from proxy.vm.faults import FaultState
from proxy.vm.page_table import PageTable

JSON = "application/json"
RESPONSES = Reader(body=read_response, stream=EventAccumulator)
# An unknown `previous_response_id` is looked for again after each of these pauses (0.2 s in
# all) before it is refused: see _continued.
FIND_AGAIN_S = (0.01, 0.03, 0.06, 0.1)
# Fields naming upstream-side state or the input, which a rebuilt request replaces (its
# `instructions` stay: its own, sent in place of any earlier request's).
_REBUILT = frozenset({"input", "previous_response_id", "conversation"})


async def relay_responses(
    state: AppServices, request: Request, content: bytes, *, stream: bool, whole: bool = True
) -> Response:
    """A Responses request forwarded as it is; a 2xx that does not fit the request's
    `stream` is a 502, and so is, unless in mode off (`whole` False), a body that is not
    a Response (an HTML page, a cut body)."""
    return await relay(state.upstream, request, "POST", "/responses", content,
                       buffer_unsized=True, expects=expected(stream, "object", whole))


async def handle_responses(
    state: AppServices,
    request: Request,
    body: dict[str, Any],
    raw: bytes,
    messages: list[dict[str, Any]] | None = None,
) -> Response:
    """`messages`: the request's instructions and input as chat messages, when its
    validation made them (else they are made here)."""
    settings = state.settings
    mode = request_mode(settings.vm.mode, request.headers, body)
    stream = body.get("stream") is True
    if mode == "off":
        return await relay_responses(state, request, raw, stream=stream, whole=False)
    reason = not_servable(body, settings.upstream.responses)
    if reason is not None:
        log.info("POST /v1/responses relayed without memory: %s", reason)
        return await relay_responses(state, request, raw, stream=stream)
    session = session_name(request.headers)
    if settings.tenant.require_credential and credential(request.headers) is None:
        raise refuse_anonymous()
    # Taken on once the store can take its writes (a writer behind makes it wait here).
    await state.store.room()
    tenant = request_tenant(request.headers, settings.tenant.secret, settings.tenant.default)
    after = await _continued(state.store, tenant, body.get("previous_response_id"))
    if session is None:
        return await _answer(state, request, body, raw, messages, tenant, session, mode,
                             after)
    held = AsyncExitStack()
    await held.enter_async_context(state.session_locks.hold((tenant, session)))
    try:
        response = await _answer(state, request, body, raw, messages, tenant, session, mode,
                                 after)
    except BaseException:
        await held.aclose()
        raise
    return SentThen(response, held.aclose,
                    sent=functools.partial(state.deliveries.note, tenant, session))


async def _continued(
    store: PageStore, tenant: str, previous: str | None
) -> tuple[str, int] | None:
    if previous is None:
        return None
    found = await store.find_response(tenant, previous)
    for pause in FIND_AGAIN_S:
        if found is not None:
            break
        # Perhaps another replica's answer, whose write is still on its way: a whole
        # history's answer is stored after it is sent, and an agent continues from it
        # at once. (In this process, an id pending in a deferred write is found.)
        await asyncio.sleep(pause)
        found = await store.find_response(tenant, previous)
    if found is None:
        raise _not_found(previous)
    return found


def _not_found(previous: str) -> InvalidRequest:
    return InvalidRequest(
        f"Previous response with id '{previous}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


async def _answer(
    state: AppServices,
    request: Request,
    body: dict[str, Any],
    raw: bytes,
    messages: list[dict[str, Any]] | None,
    tenant: str,
    session: str | None,
    mode: str,
    after: tuple[str, int] | None,
) -> Response:
    settings = state.settings
    native = settings.upstream.responses == "native"
    whole = session is None and after is None
    chat = chat_body(body, messages)
    started = time.perf_counter()
    try:
        prepared = await prepare(
            state, request, chat, tenant=tenant, session=session, mode=mode, after=after,
            instructions=instructions_of(chat["messages"]),
        )
    except Exception as exc:
        if after is not None and isinstance(exc, LookupError):
            # The id was found pending in a deferred write that was lost since (or its
            # conversation was collected): nothing stored to continue from, as for an
            # unknown id.
            raise _not_found(body["previous_response_id"]) from exc
        if not (native and fails_open(settings.vm, exc)):
            raise
        return await _fail_open(state, request, raw, "VM preparation failed", whole=whole,
                                stream=body.get("stream") is True)
    state.metrics.histogram(
        "vm_prepare_seconds", help="Time to place, store and pack one request"
    ).observe(time.perf_counter() - started)
    if prepared.turn is not None:
        return await _respond(state, request, body, chat, raw, prepared, native=native,
                              whole=whole)
    # Below the threshold its messages may be held for the answer (proxy.loop.held): stored
    # alone, as in handler.py, when no answer is (an upstream error, a cut stream).
    try:
        response = await _respond(state, request, body, chat, raw, prepared, native=native,
                                  whole=whole)
    except BaseException:
        await store_held(prepared)
        raise
    return SentThen(response, functools.partial(store_held, prepared))


async def _respond(
    state: AppServices,
    request: Request,
    body: dict[str, Any],
    chat: dict[str, Any],
    raw: bytes,
    prepared: Prepared,
    *,
    native: bool,
    whole: bool,
) -> Response:
    """The answer to a placed request: relayed, translated, or a memory turn."""
    settings = state.settings
    turn = prepared.turn
    if turn is None:
        if native:
            return await _relayed(state, request, body, chat, raw, prepared)
        turn = _unpacked_turn(state, request, prepared, chat)
    else:
        state.metrics.counter("vm_turns_total", help="Requests answered with virtual memory").inc()
    turn.stats = request_stats(request.scope)
    rt = ResponsesTurn(turn, body, native=native, store=state.store)
    first_body = turn.first_body()
    if body.get("stream") is True:
        dialect = ResponsesStream(rt)
        opened = await open_first(turn, first_body, dialect)
        return StreamingResponse(
            counted(stream_events(turn, first_body, opened, dialect), turn, state.metrics),
            media_type="text/event-stream",
            headers=turn.response_headers(final=False),
        )
    try:
        answer = await rt.complete(first_body)
    except Exception as exc:
        if not (native and fails_open(settings.vm, exc)):
            raise
        return await _fail_open(state, request, raw, "the fault loop failed",
                                whole=whole and not prepared.placement.appended, stream=False)
    count_turn(state.metrics, turn)
    return Response(
        orjson.dumps(answer), media_type=JSON, headers=turn.response_headers(final=True)
    )


async def _relayed(
    state: AppServices,
    request: Request,
    body: dict[str, Any],
    chat: dict[str, Any],
    raw: bytes,
    prepared: Prepared,
) -> Response:
    """Below the threshold, on a native upstream: the request as it is (the upstream's
    answer relayed byte for byte), its input rebuilt from the store when it held only the
    new items (with its own `instructions`, no earlier request's); the answer is stored
    once complete and the upstream's response id mapped."""
    content = raw
    if prepared.forward_body is not None or body.get("previous_response_id") is not None:
        history = (prepared.forward_body or chat)["messages"]
        instructions = instructions_of(chat["messages"])
        rebuilt = {k: v for k, v in body.items() if k not in _REBUILT}
        # (Its instructions go as the request sent them, in `instructions`.)
        rebuilt["input"] = input_items(
            with_instructions(instructions, history)[len(instructions):]
        )
        content = orjson.dumps(rebuilt)
    response = await relay_responses(state, request, content,
                                     stream=body.get("stream") is True)
    if isinstance(body.get("previous_response_id"), str):
        # The upstream echoes the rebuilt request, which names no previous response.
        response = echo_previous(response, body["previous_response_id"])
    store = state.store

    async def store_answer(message: AssembledMessage) -> None:
        if not isinstance(message, ItemsMessage):
            return
        placement = await prepared.conversations.extend(
            prepared.tenant, prepared.placement, [assistant_message(message.items)],
            response_id=message.id or None,
        )
        if message.id:
            await remember_unwritten(store, prepared.tenant, message.id, placement)

    set_headers(response.raw_headers, prepared.headers())
    # A request that held only its new items (a session, a previous_response_id) is followed
    # by one that names this answer: stored, and its id mapped, before the answer is sent.
    store_first = prepared.session is not None or body.get("previous_response_id") is not None
    return observe(response, store_answer, RESPONSES, store_first=store_first)


def _unpacked_turn(
    state: AppServices, request: Request, prepared: Prepared, chat: dict[str, Any]
) -> Turn:
    """Below the threshold, on a chat upstream: the request translated as it is (its whole
    history when it held only the new items), no VM tools, answered through the loop so
    that the client still gets a Responses answer. Nothing was packed, so the conversation
    keeps no page table or frame for this turn (as below the threshold on any path)."""
    settings = state.settings
    body = dict(prepared.forward_body or chat)
    body["messages"] = with_instructions(instructions_of(chat["messages"]), body["messages"])
    if body.get("stream") is True:
        body["stream_options"] = {"include_usage": True}
    fault_state = FaultState(max_faults=0, max_tokens=0, turn=0, in_view={})
    resolver = FaultResolver(state.store, prepared.placement.path, fault_state, mode="passive")
    resolver.withdraw("Memory tools are not offered below vm.activate_above")
    return Turn(
        log_content=settings.server.log_content,
        upstream=state.upstream,
        headers=list(request.headers.items()),
        settings=settings.vm,
        store=state.store,
        conversations=prepared.conversations,
        placement=prepared.placement,
        tenant=prepared.tenant,
        session=prepared.session,
        mode="passive",
        body=body,
        vm_tool_names={},
        resolver=resolver,
        counter=counter_for_model(str(body.get("model"))),
        table=PageTable(),
        turn_number=0,
        prompt_tokens_full=prepared.prompt_tokens_full,
        created=int(time.time()),
    )


async def _fail_open(
    state: AppServices, request: Request, raw: bytes, what: str, *, whole: bool, stream: bool
) -> Response:
    return await answer_without_memory(
        state, what, functools.partial(relay_responses, state, request, raw, stream=stream),
        whole=whole,
        held="items of its conversation",
    )
