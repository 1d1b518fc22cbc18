"""Before the upstream call: store the request's new messages, decide whether memory is
needed, and if so gather the candidates and pack the upstream body."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from proxy.config import VMSettings
from proxy.loop.conversations import Conversations
from proxy.loop.early_search import EarlySearch
from proxy.loop.placement import Placement
from proxy.loop.resolver import FaultResolver
from proxy.loop.services import AppServices
from proxy.loop.storing import Ingester
from proxy.loop.turn import Turn
from proxy.store.base import PageStore
from proxy.tokens import TokenCounter, counter_for_model
from proxy.vm.faults import FaultState
from proxy.vm.frame import Frame
from proxy.vm.ingest import Counters
from proxy.vm.packer import PackedRequest, PackOptions, pack_request
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page
from proxy.vm.prefetch import SEARCH_HITS, gather_candidates, plan_prefetch, search_query
from proxy.vm.working_set import ScoredPage

# Room kept free in the first upstream prompt for what the loop adds: search results, the
# assistant's tool calls and the tool-message framing (faulted pages have their own budget).
LOOP_RESERVE_TOKENS = 300
# Below this many tokens of room for faulted pages the tools are not worth offering.
MIN_FAULT_TOKENS = 150
# Without a client max_tokens, the reply is reserved at most 1/REPLY_SHARE of the budget.
REPLY_SHARE = 5


@dataclass
class Prepared:
    conversations: Conversations
    tenant: str
    session: str | None
    placement: Placement
    prompt_tokens_full: int
    turn: Turn | None
    # Below the threshold in append mode: the whole history rebuilt from the store, since
    # the request itself holds only the new messages.
    forward_body: dict[str, Any] | None = None

    def headers(self) -> dict[str, str]:
        """Headers of a request forwarded unchanged (below the threshold)."""
        return {
            "x-vm-session": self.session or self.placement.leaf.conv_id,
            "x-vm-faults": "0",
            "x-vm-prompt-tokens": str(self.prompt_tokens_full),
            "x-vm-prompt-tokens-full": str(self.prompt_tokens_full),
        }


async def prepare(
    state: AppServices,
    request: Request,
    body: dict[str, Any],
    *,
    tenant: str,
    session: str | None,
    mode: str,
    after: tuple[str, int] | None = None,
) -> Prepared:
    """`after`: where the request's messages go when it continues an earlier answer
    (Conversations.place); else they are aligned by content or appended to `session`."""
    settings = state.settings
    store: PageStore = state.store
    counter = counter_for_model(body.get("model"))
    ingester = Ingester(lambda: counter, settings.vm.segment_turns)
    conversations = Conversations(store, ingester.ingest, ingester.state_at, state.prefix_cache)
    tools = [t for t in body.get("tools") or () if isinstance(t, Mapping)]
    overhead = counter.format.reply_primer + counter.tools(tools, has_system=True)
    activate_above = settings.vm.activate_above
    early = EarlySearch(
        store,
        lambda: search_query(_last_user_text(body["messages"])),
        SEARCH_HITS,
        wanted=lambda stored: int(stored.get("tokens", 0)) + overhead > activate_above,
    )
    try:
        placement = await conversations.place(
            tenant, body["messages"], session, on_append=early.appending, after=after
        )
        end = placement.offset + placement.length
        conv_state = await ingester.state_at(
            store, tenant, placement.path, end - 1, placement.leaf
        )
        full = int(conv_state.get("tokens", 0)) + overhead
        prepared = Prepared(conversations, tenant, session, placement, full, None)
        if full <= activate_above:
            if placement.offset > 0:
                pages = await store.pages_in_range(placement.path, 0, end)
                history = [_message(p) for p in pages if p.is_message]
                prepared.forward_body = {**body, "messages": history}
            return prepared
        prepared.turn = await _pack_turn(
            state, request, body, counter, conversations, placement, conv_state, full,
            session, mode, early,
        )
        return prepared
    finally:
        early.cancel()  # when the turn did not take it


async def _pack_turn(
    state: AppServices,
    request: Request,
    body: dict[str, Any],
    counter: TokenCounter,
    conversations: Conversations,
    placement: Placement,
    conv_state: Mapping[str, Any],
    full: int,
    session: str | None,
    mode: str,
    early: EarlySearch,
) -> Turn:
    settings = state.settings.vm
    store: PageStore = state.store
    path = placement.path
    end = placement.offset + placement.length
    counters = Counters.from_dict(conv_state.get("counters"))
    leaf_state = placement.leaf.state if placement.leaf.length == end else {}
    table = PageTable.from_dict(leaf_state.get("table"))
    turn_number = counters.turns
    plan = plan_prefetch(
        counters,
        table,
        turn=turn_number,
        user_text=_last_user_text(body["messages"]),
        pin_last_turns=settings.pin_last_turns,
    )
    # The stored frame keeps the prompt append-only between compactions (vm/frame.py): its
    # window starts at or before the pinned turns.
    frame = Frame.from_dict(leaf_state.get("frame"))
    if frame is not None and not counters.preamble <= frame.start <= plan.pinned_from:
        frame = None
    start = plan.pinned_from if frame is None else frame.start
    frame_ids = frame.page_ids() if frame is not None else []
    # Independent reads, issued together: one round trip where the store can batch them
    # (SQLite), concurrent queries where it cannot.
    system, tail, hits, loaded = await asyncio.gather(
        store.pages_in_range(path, 0, counters.preamble),
        store.pages_in_range(path, start, end),
        early.hits(path, plan.query, plan.search_limit),
        store.get_pages(path, [*plan.page_ids(), *frame_ids]),
    )
    frame_pages = {pid: loaded[pid] for pid in frame_ids if pid in loaded}
    system_ids = [p.page_id for p in system]
    candidates = gather_candidates(
        hits=[(hit.page, hit.score) for hit in hits],
        pages=loaded.values(),
        plan=plan,
        exclude=system_ids,
    )
    wanted = min(settings.max_fault_tokens_per_turn, settings.context_budget // 4)
    messages = [p for p in tail if p.is_message]
    frozen = _Frozen(frame, frame_pages)
    packed = _pack(body, system, messages, candidates, table, settings, mode, wanted,
                   counter, turn_number, end, frozen)
    if mode != "passive" and packed.pinned_dropped:
        # Pinned turns outrank room for faults: pack again keeping only the least room.
        packed = _pack(body, system, messages, candidates, table, settings, mode,
                       min(wanted, MIN_FAULT_TOKENS), counter, turn_number, end, frozen)
    # Faults get the room the packed prompt really leaves, within their own limit.
    room = settings.context_budget - packed.prompt_tokens - packed.reply_tokens
    fault_tokens = min(wanted, room - LOOP_RESERVE_TOKENS)
    if mode != "passive" and fault_tokens < min(wanted, MIN_FAULT_TOKENS):
        # Not even the VM rules and tool schemas fit beside the pinned turns with room to
        # fault: without the tools (passive) the model still gets the best context.
        mode = "passive"
        packed = _pack(body, system, messages, candidates, table, settings, mode, 0,
                       counter, turn_number, end, frozen)
    upstream_body = packed.body
    client_options = body.get("stream_options")
    wants_usage = (
        isinstance(client_options, Mapping) and client_options.get("include_usage") is True
    )
    if body.get("stream") is True:
        options = dict(client_options) if isinstance(client_options, Mapping) else {}
        upstream_body = {**upstream_body, "stream_options": {**options, "include_usage": True}}
    # Passive requests offer no VM tools, but a model calling one anyway is still answered
    # by the proxy (with "withdrawn"), never passed to the client.
    names = {v: k for k, v in packed.tool_names.items()}
    # The packing kept `fault_tokens` free; at run time a fault may use whatever the prompt
    # really leaves (Turn.fault_room), up to the configured limit: a page that fits whole
    # is worth more than its reduction.
    fault_state = FaultState(
        max_faults=settings.max_faults_per_turn,
        max_tokens=settings.max_fault_tokens_per_turn,
        turn=turn_number,
        in_view=packed.in_view(),
    )
    listed = packed.manifest.get("available", ())
    known = [str(e.get("id")) for e in listed if isinstance(e, dict)]
    resolver = FaultResolver(store, path, fault_state, mode=mode, known_ids=known)
    if mode == "passive":
        resolver.withdraw("Memory tools are not offered in passive mode")
    turn = Turn(
        log_content=state.settings.server.log_content,
        upstream=state.upstream,
        headers=list(request.headers.items()),
        settings=settings,
        store=store,
        conversations=conversations,
        placement=placement,
        tenant=placement.path.tenant,
        session=session,
        mode=mode,
        body=upstream_body,
        vm_tool_names=names,
        resolver=resolver,
        counter=counter,
        table=table,
        turn_number=turn_number,
        prompt_tokens_full=full,
        client_wants_usage=wants_usage,
        created=int(time.time()),
        mutations=list(packed.mutations),
        packed_reply_tokens=packed.reply_tokens,
        frame=packed.frame.to_dict() if packed.frame is not None else None,
    )
    turn.prime_prompt_tokens(packed.prompt_tokens)
    fault_state.room = turn.fault_room
    return turn


@dataclass(frozen=True, slots=True)
class _Frozen:
    """The stored frame and its pages (the packer reuses it while the window fits)."""

    frame: Frame | None
    pages: dict[str, Page]


def _pack(
    body: dict[str, Any],
    system: list[Page],
    tail: list[Page],
    candidates: list[ScoredPage],
    table: PageTable,
    settings: VMSettings,
    mode: str,
    fault_tokens: int,
    counter: TokenCounter,
    turn: int,
    total_pages: int,
    frozen: _Frozen,
) -> PackedRequest:
    """Pack within the budget less the room the loop may add: faulted pages and the
    framing of its tool calls (none in passive mode)."""
    reserve = 0 if mode == "passive" else fault_tokens + LOOP_RESERVE_TOKENS
    budget = max(settings.context_budget - reserve, settings.context_budget // 2)
    reply = min(settings.reply_reserve_tokens, settings.context_budget // REPLY_SHARE)
    return pack_request(
        body,
        system_messages=[_message(p) for p in system],
        tail=tail,
        candidates=candidates,
        table=table,
        options=dataclasses.replace(
            pack_options(settings), context_budget=budget, reply_reserve_tokens=reply
        ),
        mode=mode,
        counter=counter,
        turn=turn,
        total_pages=total_pages,
        frame=frozen.frame,
        frame_pages=frozen.pages,
    )


def pack_options(settings: VMSettings) -> PackOptions:
    """The packer's options from the `vm.*` settings of the same names."""
    return PackOptions(
        context_budget=settings.context_budget,
        reply_reserve_tokens=settings.reply_reserve_tokens,
        max_faults_per_turn=settings.max_faults_per_turn,
        max_fault_tokens_per_turn=settings.max_fault_tokens_per_turn,
        pin_last_turns=settings.pin_last_turns,
        manifest_max_entries=settings.manifest_max_entries,
        prefetch_pages=settings.prefetch_pages,
        # "auto" is decided by create_app (config.with_prompt_shape); settings that never
        # went through it get the shape of OpenAI's own API.
        developer_role=_unless_auto(settings.developer_role, "developer"),
        turn_note=_unless_auto(settings.turn_note, "message"),
    )


def _unless_auto(value: str, default: str) -> str:
    return default if value == "auto" else value


def _message(page: Page) -> dict[str, Any]:
    return dict(page.message or {"role": page.role, "content": page.text})


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text") or "") for p in content if isinstance(p, Mapping)
                )
    return ""
