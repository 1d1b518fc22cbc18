"""Before the upstream call: store the request's new messages, decide whether memory is
needed, and if so gather the candidates and pack the upstream body."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from proxy.config import VMSettings
from proxy.loop.conversations import Conversations
from proxy.loop.derive import derive_conversation
from proxy.loop.early_search import EarlySearch
from proxy.loop.meaning import TurnSearch, request_auth
from proxy.loop.placement import Placement
from proxy.loop.resolver import FaultResolver
from proxy.loop.services import AppServices
from proxy.loop.stored_rows import retried_by_client
from proxy.loop.storing import Ingester
from proxy.loop.summarizer import summaries_hook
from proxy.loop.turn import Turn, assistant_name
from proxy.loop.turn_log import TurnLog
from proxy.store.base import PageStore
from proxy.tokens import TokenCounter, counter_for_model, legacy_functions
from proxy.upstream.responses_format import with_instructions
from proxy.vm.bm25 import search_tokens
from proxy.vm.bounds import analysed
from proxy.vm.faults import FaultState
from proxy.vm.frame import Frame
from proxy.vm.ingest import Counters
from proxy.vm.packer import (
    LOOP_RESERVE_TOKENS,
    MIN_FAULT_TOKENS,
    PackedRequest,
    PackOptions,
    asked_reply,
    pack_request,
)
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page
from proxy.vm.prefetch import (
    around_ids,
    gather_candidates,
    plan_prefetch,
    search_limit,
    search_query,
    widen_recent,
)
from proxy.vm.summary_prompt import MAX_CLAIMS
from proxy.vm.working_set import ScoredPage

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
    # The `name` the client gives the assistant's messages (stored with the answer).
    answer_name: str = ""

    def headers(self) -> dict[str, str]:
        """Headers of a request forwarded unchanged (below the threshold)."""
        return forwarded_headers(
            self.session or self.placement.leaf.conv_id, self.prompt_tokens_full
        )


def forwarded_headers(conv_id: str, tokens: int) -> dict[str, str]:
    """The VM headers of a request forwarded unchanged: no faults, the whole prompt sent."""
    return {
        "x-vm-session": conv_id,
        "x-vm-faults": "0",
        "x-vm-prompt-tokens": str(tokens),
        "x-vm-prompt-tokens-full": str(tokens),
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
    fingerprints: list[int] | None = None,
    instructions: list[dict[str, Any]] | None = None,
) -> Prepared:
    """`after`: where the request's messages go when it continues an earlier answer
    (Conversations.place); else they are aligned by content or appended to `session`.
    `fingerprints`: of its messages, when already made (Conversations.place).
    `instructions`: a Responses request's own (its leading system messages), which take
    the place of any earlier request's in the prompt (responses_format.with_instructions);
    None for a chat request, whose stored system messages are its conversation's."""
    settings = state.settings
    store: PageStore = state.store
    tools = [t for t in body.get("tools") or () if isinstance(t, Mapping)]
    tools += legacy_functions(body)
    counter, overhead, activate_above, ingester = threshold(state, request, body, tenant, tools)
    # A request holding its whole history may be answered before its messages are stored:
    # were they lost, its client's next request resends them.
    # ... and, below the threshold, stored with its answer, in one append (proxy.loop.held).
    conversations = Conversations(
        store, ingester.ingest, ingester.state_at, state.prefix_cache,
        durable=session is not None or after is not None, hold_up_to=activate_above - overhead,
        lean_tokens=ingester.lean_tokens,
    )
    meaning = state.meaning
    # The latest user message: the prefetch searches its rarest words, and its meaning.
    searches = TurnSearch(store, meaning, lambda: request_auth(request.headers.items()))
    user_text = _last_user_text(body["messages"])
    early = EarlySearch(
        store,
        lambda: search_query(user_text),
        lambda stored: hits_wanted(settings.vm, stored),
        wanted=lambda stored: int(stored.get("tokens", 0)) + overhead > activate_above,
        search=lambda path, query, limit: searches.search(path, query, limit, text=user_text,
                                                          neighbours=True),
    )
    try:
        placement = await conversations.place(
            tenant, body["messages"], session, on_append=early.appending, after=after,
            fingerprints=fingerprints, retried=_delivered(state, request, tenant, session),
        )
        end = placement.offset + placement.length
        conv_state = await ingester.state_at(
            store, tenant, placement.path, end - 1, placement.leaf
        )
        full = int(conv_state.get("tokens", 0)) + overhead
        prepared = Prepared(conversations, tenant, session, placement, full, None)
        prepared.answer_name = assistant_name(body["messages"])
        if full <= activate_above:
            if placement.offset > 0:
                pages = await store.pages_in_range(placement.path, 0, end)
                history = [_message(p) for p in pages if p.is_message]
                prepared.forward_body = {**body, "messages": history}
            return prepared
        # (Nothing is held above the threshold; were anything, the turn would read it.)
        await conversations.flush(tenant)
        if Counters.from_dict(conv_state.get("counters")).derived < end:
            # Memory is needed, and this request stored nothing that derived the lean pages.
            await derive_conversation(store, ingester.ingest, tenant, placement.leaf.conv_id)
            conv_state = await ingester.state_at(store, tenant, placement.path, end - 1)
        if meaning is not None:
            # Its pages, this turn's question among them, are embedded in the background:
            # this turn searches by meaning what earlier turns had embedded.
            meaning.worker.enqueue(tenant, placement.leaf.conv_id, searches.auth)
        prepared.turn = await _pack_turn(
            state, request, body, counter, conversations, placement, conv_state, full,
            session, mode, early, searches, instructions,
        )
        return prepared
    finally:
        early.cancel()  # when the turn did not take it


def _delivered(
    state: AppServices, request: Request, tenant: str, session: str | None
) -> Callable[[float], bool] | None:
    """For an SDK's retry of a session turn: whether a response of the session delivered
    an answer stored at a time (proxy.loop.deliveries); None for any other request."""
    if session is None or not retried_by_client(request.headers):
        return None
    return functools.partial(state.deliveries.since, tenant, session)


def threshold(
    state: AppServices,
    request: Request,
    body: Mapping[str, Any],
    tenant: str,
    tools: Sequence[Mapping[str, Any]],
) -> tuple[TokenCounter, int, int, Ingester]:
    """The request's token counter, what its prompt costs besides its messages (the reply
    primer, the tools), the size up to which it is forwarded whole, and the ingest storing
    its messages (lean up to that size, proxy.loop.derive)."""
    settings = state.settings
    counter = counter_for_model(body.get("model"))
    overhead = counter.format.reply_primer + counter.tools(tools, has_system=True)
    # A request is forwarded whole only when it is at most `vm.activate_above` and it fits
    # the budget with its reply's allowance: the budget holds the reply too.
    activate_above = min(
        # (The reply a client asks for; none asked: the upstream's default is not ours to
        # guess.)
        settings.vm.activate_above, settings.vm.context_budget - asked_reply(body)[0]
    )
    ingester = Ingester(
        lambda: counter, settings.vm.segment_turns, lean_up_to=activate_above - overhead,
        on_summaries=summaries_hook(state.summarizer, tenant, request),
        model_claims=MAX_CLAIMS if state.summarizer is not None else 0,
    )
    return counter, overhead, activate_above, ingester


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
    searches: TurnSearch,
    instructions: list[dict[str, Any]] | None,
) -> Turn:
    settings = state.settings.vm
    store: PageStore = state.store
    path = placement.path
    end = placement.offset + placement.length
    counters = Counters.from_dict(conv_state.get("counters"))
    leaf_state = placement.leaf.state if placement.leaf.length == end else {}
    table = PageTable.from_dict(leaf_state.get("table"))
    turn_number = counters.turns
    user_text = _last_user_text(body["messages"])
    plan = plan_prefetch(
        counters,
        table,
        turn=turn_number,
        user_text=user_text,
        pin_last_turns=settings.pin_last_turns,
        limit=hits_wanted(settings, conv_state),
    )
    # The stored frame keeps the prompt append-only between compactions (vm/frame.py): its
    # window starts at or before the pinned turns.
    frame = Frame.from_dict(leaf_state.get("frame"))
    if frame is not None and not counters.preamble <= frame.start <= plan.pinned_from:
        frame = None
    start = plan.pinned_from if frame is None else frame.start
    # Independent reads, issued together: one round trip where the store can batch them
    # (SQLite), concurrent queries where it cannot.
    lo = min(start, plan.recent[0])
    system, tail, hits, loaded = await asyncio.gather(
        store.pages_in_range(path, 0, counters.preamble),
        store.pages_in_range(path, lo, end),
        early.hits(path, plan.query, plan.search_limit),
        store.get_pages(path, plan.page_ids()),
    )
    loaded = {**loaded, **{p.page_id: p for p in tail if p.anchor < start}}
    tail = [p for p in tail if p.anchor >= start]
    # The messages around each hit (a question's answer, an answer's question), and the
    # message a claim was drawn from: what the hits found, in one more read; and, when
    # the hits cannot fill the budget, more of the turns before the tail.
    # (With neighbours ranked among the hits by the fused search, they are hits already;
    # with `word_hits`, only BM25's hits bring theirs.)
    ranked, by_words = searches.ranked_neighbours, searches.word_hits
    bringing = [h.page for h in hits if by_words is None or h.page.page_id in by_words]
    # (`embeddings.neighbour_sides` "after": a word hit brings only the turn after it.)
    after_only = (
        by_words is not None and state.meaning is not None
        and state.meaning.settings.neighbour_sides == "after"
    )  # fmt: skip
    near_ids = around_ids(bringing, plan, counters.preamble, neighbours=not ranked,
                          after_only=after_only)  # fmt: skip
    wanted = [i for i in near_ids if i not in loaded]
    glued = set(near_ids)
    wider = widen_recent(plan, [h.page for h in hits], budget=settings.context_budget,
                         message_tokens=_average(conv_state), preamble=counters.preamble)
    reads = [store.get_pages(path, wanted) if wanted else _nothing()]
    if wider.recent[0] < lo:
        reads.append(_by_id(store.pages_in_range(path, wider.recent[0], lo)))
    for found in await asyncio.gather(*reads):
        loaded = {**loaded, **found}
    plan = wider
    candidates = gather_candidates(
        hits=[(hit.page, hit.score) for hit in hits],
        pages=loaded.values(),
        plan=plan,
        exclude=[p.page_id for p in system],
    )
    around = {} if ranked else {
        p.anchor: p for p in loaded.values() if p.page_id.startswith("msg_")
        and (by_words is None or p.page_id in glued)
    }
    messages = [p for p in tail if p.is_message]
    # The terms excerpts are drawn by, and stored in the turn's record: those of the part
    # of the message that is analysed (proxy.vm.bounds), as for its page's search terms;
    # all of a 30 MB message would hold the event loop for tens of milliseconds (issue 13).
    terms = search_tokens(analysed(user_text))
    system_messages = [_message(p) for p in system]
    if instructions is not None:
        system_messages = with_instructions(instructions, system_messages)
    inputs = _PackInputs(body, system_messages, messages, candidates, around, table,
                         settings, counter, turn_number, end, frame, terms)  # fmt: skip
    packed = _pack(inputs, mode)
    if mode != "passive" and packed.pinned_dropped:
        # Pinned turns outrank room for faults: pack again keeping only the least room.
        packed = _pack(inputs, mode, fault_tokens=MIN_FAULT_TOKENS)
    room = settings.context_budget - packed.prompt_tokens - packed.reply_tokens
    least = min(packed.reserve, LOOP_RESERVE_TOKENS + MIN_FAULT_TOKENS)
    if mode != "passive" and room < least:
        # Not even the VM rules and tool schemas fit beside the pinned turns with room to
        # fault: without the tools (passive) the model still gets the best context.
        mode = "passive"
        packed = _pack(inputs, mode)
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
    # The packing kept room for the faults a model likely takes; at run time a fault may
    # use whatever the prompt really leaves (Turn.fault_room), up to the configured limit:
    # a page that fits whole is worth more than its reduction.
    fault_state = FaultState(
        max_faults=settings.max_faults_per_turn,
        max_tokens=settings.max_fault_tokens_per_turn,
        turn=turn_number,
        # The leading system messages are in the prompt whole too.
        in_view={**dict.fromkeys((p.page_id for p in system), 0), **packed.in_view()},
    )
    listed = packed.manifest.get("more", ())
    known = [str(e.get("id")) for e in listed if isinstance(e, dict)]
    resolver = FaultResolver(
        store, path, fault_state, mode=mode, known_ids=known,
        search=lambda path, query, limit, modality: searches.search(
            path, query, limit, modality=modality
        ),
    )
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
        log=TurnLog.start(packed.record, leaf_state),
        packed_reply_tokens=packed.reply_tokens,
        frame=packed.frame.to_dict() if packed.frame is not None else None,
        answer_name=assistant_name(body["messages"]),
    )
    turn.prime_prompt_tokens(packed.prompt_tokens)
    fault_state.room = _room_of(turn)
    return turn


def _room_of(turn: Turn) -> Callable[[], int]:
    """`turn.fault_room`, without holding the turn: the turn holds the fault state (through
    its resolver), and a bound method back to it would make a cycle that only the garbage
    collector frees, with everything the turn holds (its log, its prompt's records: some
    hundreds of objects a turn, and a young collection of them every few dozen turns)."""
    room = weakref.WeakMethod(turn.fault_room)

    def fault_room() -> int:
        bound = room()
        assert bound is not None, "the fault room is asked only while its turn runs"
        return bound()

    return fault_room


def hits_wanted(settings: VMSettings, conv_state: Mapping[str, Any]) -> int:
    """The turn's search hits: enough to fill the budget, by the conversation's average
    message size (the same number whether asked when the question's append is issued or
    once it is stored, so the early search is the turn's)."""
    return search_limit(settings.context_budget, _average(conv_state))


def _average(conv_state: Mapping[str, Any]) -> float:
    """Tokens of a message of this conversation, on average."""
    counters = conv_state.get("counters")
    messages = int(counters.get("messages", 0)) if isinstance(counters, Mapping) else 0
    return int(conv_state.get("tokens", 0)) / max(messages, 1)


async def _nothing() -> dict[str, Page]:
    return {}


async def _by_id(pages: Awaitable[list[Page]]) -> dict[str, Page]:
    return {p.page_id: p for p in await pages}


@dataclass(frozen=True, slots=True)
class _PackInputs:
    body: dict[str, Any]
    system: list[dict[str, Any]]  # the prompt's leading system messages
    tail: list[Page]
    candidates: list[ScoredPage]
    around: dict[int, Page]
    table: PageTable
    settings: VMSettings
    counter: TokenCounter
    turn: int
    total_pages: int
    frame: Frame | None
    terms: list[str]


def _pack(inputs: _PackInputs, mode: str, fault_tokens: int | None = None) -> PackedRequest:
    settings = inputs.settings
    reply = min(settings.reply_reserve_tokens, settings.context_budget // REPLY_SHARE)
    return pack_request(
        inputs.body,
        system_messages=inputs.system,
        tail=inputs.tail,
        candidates=inputs.candidates,
        table=inputs.table,
        options=dataclasses.replace(pack_options(settings), reply_reserve_tokens=reply),
        mode=mode,
        counter=inputs.counter,
        turn=inputs.turn,
        terms=inputs.terms,
        around=inputs.around,
        total_pages=inputs.total_pages,
        frame=inputs.frame,
        fault_tokens=fault_tokens,
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
        # "auto" is decided by create_app (config.with_prompt_shape); settings that never
        # went through it get the shape of OpenAI's own API.
        developer_role=_unless_auto(settings.developer_role, "developer"),
        turn_note=_unless_auto(settings.turn_note, "message"),
        window_share=settings.window_share,
        recall_share=settings.recall_share,
        expected_faults=settings.expected_faults,
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
