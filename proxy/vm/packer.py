"""`pack_request`: the one call that turns a client request plus memory into the upstream body.

Upstream message order (an append-only window between compactions, see frame.py):
1. one developer (or system, per `vm.developer_role`) message: client system prompt, mode
   rules, the frozen `<VM:CONTEXT>` (summaries and claims first) and the frozen
   `<VM:MANIFEST_JSON>`; byte-identical from one compaction to the next;
2. every message from the frame's start to the end, verbatim, as real messages (tool
   exchanges whole), with this turn's block (a developer message holding the pages relevant
   to the latest user message, recently faulted and hot pages, and a manifest delta naming
   the turn) right after the latest user message;
and `tools` = the client's tools plus the VM tools (none in passive mode).

When the window no longer fits, the packer compacts: the window restarts at the last
`pin_last_turns` turns and the frozen context is chosen again (query-independent: the latest
summaries, claims, recent and hot pages), taking a share of the room so the window has room
to grow before the next compaction. A caller without a frame compacts every turn.

Everything (messages, tool schemas and the reply's max tokens) fits `vm.context_budget`
as counted by proxy.tokens; counts come from per-page caches (and the frame's stored count),
so the cost of packing grows with the budget and the candidates, not with the conversation.
Every client field other than messages, tools and a clamped max_tokens/max_completion_tokens
passes through untouched.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.tokens import TokenCounter
from proxy.vm import context, manifest
from proxy.vm import mutations as events
from proxy.vm.escape import escape_block
from proxy.vm.frame import Frame, block_position, frame_key
from proxy.vm.mutations import Clock, Mutation
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page
from proxy.vm.pinning import PinnedPlan, fit_pinned, message_tokens, plan_pinned
from proxy.vm.prompts import rules
from proxy.vm.tools import vm_tool_names, vm_tool_schemas
from proxy.vm.turn_block import Block, BlockInputs, build_block, in_window
from proxy.vm.working_set import MAX_FULL_SHARE, Mapped, ScoredPage, select_context

# A mapped page also costs its manifest entry; about this many tokens.
MANIFEST_ENTRY_TOKENS = 20
# The reply may claim at most this share of the budget when the client asks for more.
MAX_REPLY_SHARE = 0.5
# The frozen manifest's available list takes at most about this share of the budget (an
# entry costs some 25 tokens), within vm.manifest_max_entries.
MANIFEST_SHARE = 0.06
MANIFEST_ENTRY_COST = 25
# This turn's block may take this share of the budget; with less room than half of it
# left beside the window, the packer compacts.
BLOCK_SHARE = 0.08
# At a compaction the frozen context takes this share of the room the pinned turns and the
# block leave; the rest is where the window grows until the next compaction.
FROZEN_SHARE = 0.4
MODES = ("strict", "relaxed", "passive")


@dataclass(frozen=True, slots=True)
class PackOptions:
    """What one pack is held to (the `vm.*` settings of the same names, as the loop passes
    them): the budget and its shares, the limits the manifest announces, and the shape of
    the prompt (the leading message's role; `turn_note` "leading" closes that message with
    the turn's block instead of sending the block after the latest user message)."""

    context_budget: int
    reply_reserve_tokens: int
    max_faults_per_turn: int
    max_fault_tokens_per_turn: int
    pin_last_turns: int
    manifest_max_entries: int
    prefetch_pages: int
    developer_role: str
    turn_note: str


@dataclass
class PackedRequest:
    body: dict[str, Any]
    mapped: dict[str, int]  # page id -> level in a <VM:CONTEXT> (frozen or this turn's)
    pinned_ids: list[str]  # the messages sent verbatim, in order
    prompt_tokens: int
    reply_tokens: int
    tool_names: dict[str, str]
    mutations: list[Mutation]
    manifest: dict[str, Any]  # frozen and this turn's manifest, merged (for the loop)
    notes: list[str] = field(default_factory=list)
    over_budget: bool = False
    # What to keep in the conversation state for the next turn (None: it compacts).
    frame: Frame | None = None
    compacted: bool = True
    # Pinned turns or exchanges had to leave to make the prompt fit.
    pinned_dropped: bool = False

    def in_view(self) -> dict[str, int]:
        """Page id -> level the model sees (pinned messages at 0), for FaultState."""
        return {**dict.fromkeys(self.pinned_ids, 0), **self.mapped}


@dataclass(frozen=True, slots=True)
class _Shared:
    """What both paths (reuse the frame, compact) need."""

    body: Mapping[str, Any]
    prefix: str
    role: str
    tools: list[Mapping[str, Any]]
    names: dict[str, str]
    reply: int
    reply_field: str | None
    fixed: int
    limit: int  # tokens for the frozen part, the window and the block
    key: str
    block_max: int
    policy: manifest.Policy
    inputs: BlockInputs
    # vm.turn_note "leading": the turn's block closes the leading message instead of
    # following the latest user message (for chat templates that take no later system
    # message); it costs the prompt-cache prefix from the block on.
    block_in_lead: bool = False


def pack_request(
    body: Mapping[str, Any],
    *,
    system_messages: Sequence[Mapping[str, Any]],
    tail: Sequence[Page],
    candidates: Sequence[ScoredPage],
    available: Sequence[Page] = (),
    table: PageTable,
    options: PackOptions,
    mode: str,
    counter: TokenCounter,
    turn: int,
    total_pages: int | None = None,
    clock: Clock = time.time,
    frame: Frame | None = None,
    frame_pages: Mapping[str, Page] | None = None,
) -> PackedRequest:
    """Build the upstream body for one turn. `tail` holds the message pages from the frame's
    start (or, without a frame, the pinned start: prefetch.pinned_start) to the end, in
    order; `candidates` the pages that may be mapped; `available` further pages the manifest
    may list; `frame_pages` the pages of `frame.context`. Does not modify `table`."""
    if mode not in MODES:
        raise ValueError(f"pack_request: mode must be one of {MODES}, got {mode!r}")
    client_tools = [t for t in body.get("tools") or () if isinstance(t, Mapping)]
    names = vm_tool_names(client_tools)
    tools = client_tools + (vm_tool_schemas(names) if mode != "passive" else [])
    reply, reply_field = _reply_budget(body, options)
    prefix = _prefix(system_messages, mode, names)
    role = options.developer_role
    fmt = counter.format
    fixed = (
        fmt.reply_primer
        + fmt.per_message
        + counter.text(role)
        + counter.text(prefix)
        + counter.text(_FRAME)
        + counter.tools(tools, has_system=True)
    )
    shared = _Shared(
        body=body,
        prefix=prefix,
        role=role,
        tools=tools,
        names=names,
        reply=reply,
        reply_field=reply_field,
        fixed=fixed,
        limit=options.context_budget - reply - fixed,
        key=frame_key(mode, role, counter.name, names),
        block_max=int(options.context_budget * BLOCK_SHARE),
        block_in_lead=options.turn_note == "leading",
        policy=manifest.Policy(
            faults=mode != "passive",
            max_faults_per_turn=options.max_faults_per_turn,
            max_fault_tokens_per_turn=options.max_fault_tokens_per_turn,
        ),
        inputs=BlockInputs(
            candidates=candidates,
            table=table,
            turn=turn,
            counter=counter,
            role=role,
            full_pages=options.prefetch_pages,
            max_full=int(options.context_budget * MAX_FULL_SHARE),
            total_pages=total_pages,
        ),
    )
    window = [p for p in tail if p.message is not None]
    if frame is not None:
        reused = _reuse(shared, frame, frame_pages or {}, window)
        if reused is not None:
            return _finish(shared, reused, table, turn, clock())
    return _finish(
        shared, _compact(shared, window, available, options, mode), table, turn, clock()
    )


@dataclass
class _Layout:
    frame: Frame  # the frozen part in use (saved for the next turn only when `keep`)
    frozen: list[Mapped]
    messages: list[Mapping[str, Any]]
    pinned_ids: list[str]
    window_tokens: int
    block: Block
    keep: bool
    compacted: bool
    notes: list[str] = field(default_factory=list)
    over_budget: bool = False
    pinned_dropped: bool = False


def _reuse(
    shared: _Shared, frame: Frame, pages: Mapping[str, Page], window: Sequence[Page]
) -> _Layout | None:
    """This turn on the stored frame, if it still applies and the window still fits with
    room for a block; else None (compact)."""
    if frame.key != shared.key or not window or window[0].anchor != frame.start:
        return None
    if any(pid not in pages for pid in frame.page_ids()):
        return None
    window_tokens = sum(message_tokens(p, shared.inputs.counter) for p in window)
    room = shared.limit - frame.tokens - window_tokens
    if room < shared.block_max // 2:
        return None
    levels = frame.levels()
    block = build_block(
        shared.inputs, start=frame.start, frozen=levels, budget=min(room, shared.block_max)
    )
    frozen = [Mapped(pages[pid], level, 0, 0.0, "frozen") for pid, level in frame.context]
    return _Layout(
        frame=frame,
        frozen=frozen,
        messages=[dict(p.message or {}) for p in window],
        pinned_ids=[p.page_id for p in window],
        window_tokens=window_tokens,
        block=block,
        keep=True,
        compacted=False,
    )


def _compact(
    shared: _Shared,
    window: Sequence[Page],
    available: Sequence[Page],
    options: PackOptions,
    mode: str,
) -> _Layout:
    """Restart the window at the pinned turns and choose the frozen context again."""
    inputs = shared.inputs
    counter = inputs.counter
    units = plan_pinned(window, pin_last_turns=options.pin_last_turns, counter=counter)
    cap = min(
        options.manifest_max_entries,
        max(1, int(options.context_budget * MANIFEST_SHARE) // MANIFEST_ENTRY_COST),
    )
    pinned_start = units[0].pages[0].anchor if units else -1
    pool = [c for c in inputs.candidates if not in_window(c.page, pinned_start)]
    older = [p for p in window if p.anchor < pinned_start]
    listable = [*(c.page for c in pool), *older, *available]
    ranked = manifest.rank_available(listable, exclude=set(), order={})
    by_id = {p.page_id: p for p in listable}

    def frozen_manifest(start: int, mapped: Sequence[Mapped]) -> tuple[dict[str, Any], int]:
        shown = {m.page.page_id for m in mapped}
        listed = [p for p in ranked if p.page_id not in shown and not in_window(p, start)]
        data = manifest.build_frozen(
            mode=mode,
            pinned_from=f"msg_{start}" if start >= 0 else None,
            mapped=mapped,
            available=listed[:cap],
            policy=shared.policy,
        )
        return data, manifest.manifest_tokens(data, counter, by_id)

    reserve = frozen_manifest(pinned_start, [])[1]
    pinned = fit_pinned(units, shared.limit - reserve, counter)
    start = pinned.pages[0].anchor if pinned.pages else pinned_start
    keep = _verbatim_to_end(pinned, window)
    pool += [ScoredPage(p, 0.0, "unpinned") for p in [*older, *pinned.dropped]]
    pool = [c for c in pool if not in_window(c.page, start)]
    rest = shared.limit - reserve - pinned.tokens
    block_room = min(shared.block_max, max(rest, 0))
    # The window grows into what the frozen context leaves (when it can be kept at all).
    share = FROZEN_SHARE if keep else 1.0
    allowed = reserve + int((rest - block_room) * share)

    def cost(page: Page, level: int) -> int:
        return context.block_tokens(page, level, counter) + MANIFEST_ENTRY_TOKENS

    budget = allowed - reserve
    while True:
        selection = select_context(
            pool,
            budget=max(budget, 0),
            cost=cost,
            table=inputs.table,
            turn=inputs.turn,
            full_pages=options.prefetch_pages,
        )
        data, listed = frozen_manifest(start, selection.mapped)
        frozen = context.order_blocks(selection.mapped)
        tokens = sum(context.block_tokens(m.page, m.level, counter) for m in frozen) + listed
        overshoot = tokens - max(allowed, reserve)
        if overshoot <= 0 or not selection.mapped:
            break
        budget = selection.tokens - overshoot
    room = shared.limit - tokens - pinned.tokens
    block = build_block(
        inputs,
        start=start,
        frozen=selection.levels(),
        budget=min(room, shared.block_max),
    )
    made = Frame(
        start=start,
        context=tuple((m.page.page_id, m.level) for m in frozen),
        manifest=data,
        tokens=tokens,
        key=shared.key,
        turn=inputs.turn,
    )
    return _Layout(
        frame=made,
        frozen=frozen,
        messages=[dict(m) for m in pinned.messages],
        pinned_ids=[p.page_id for p in pinned.pages],
        window_tokens=pinned.tokens,
        block=block,
        keep=keep,
        compacted=True,
        notes=[*pinned.notes, *selection.notes],
        over_budget=pinned.over_budget,
        pinned_dropped=bool(pinned.dropped),
    )


def _verbatim_to_end(pinned: PinnedPlan, window: Sequence[Page]) -> bool:
    """Can the next turn append to this window? Only if it is every message from its start
    to the end, none of them reduced."""
    if not pinned.pages or any(u.reduced for u in pinned.units):
        return False
    first = pinned.pages[0].anchor
    return [p.page_id for p in pinned.pages] == [p.page_id for p in window if p.anchor >= first]


def _finish(
    shared: _Shared, layout: _Layout, table: PageTable, turn: int, at: float
) -> PackedRequest:
    block = layout.block
    frame = layout.frame
    levels = {m.page.page_id: m.level for m in layout.frozen}
    for m in block.mapped:
        levels[m.page.page_id] = min(m.level, levels.get(m.page.page_id, 3))
    rendered = manifest.render_manifest(frame.manifest)
    content = (
        shared.prefix + "\n\n" + context.render_context(layout.frozen) + "\n\n" + rendered
    )
    messages = list(layout.messages)
    if block.content is not None and shared.block_in_lead:
        content += "\n\n" + block.content
    elif block.content is not None:
        at_index = block_position(messages)
        messages.insert(at_index, {"role": shared.role, "content": block.content})
    upstream = _body(shared, content, messages)
    prompt = shared.fixed + frame.tokens + layout.window_tokens + block.tokens
    overshoot = prompt + shared.reply - (shared.limit + shared.fixed + shared.reply)
    notes = [*layout.notes, *block.notes]
    if overshoot > 0:
        notes.append(f"prompt exceeds the budget by {overshoot} tokens")
    merged = {
        **frame.manifest,
        **(block.manifest or {}),
        "turn": turn,
        "pinned": list(layout.pinned_ids),
        "mapped": [*frame.manifest.get("mapped", ()), *(block.manifest or {}).get("mapped", ())],
        "available": [
            *frame.manifest.get("available", ()),
            *(block.manifest or {}).get("available", ()),
        ],
    }
    return PackedRequest(
        body=upstream,
        mapped=levels,
        pinned_ids=list(layout.pinned_ids),
        prompt_tokens=prompt,
        reply_tokens=shared.reply,
        tool_names=shared.names,
        mutations=_mutations(levels, layout.pinned_ids, table, turn, at),
        manifest=merged,
        notes=notes,
        over_budget=layout.over_budget or overshoot > 0,
        frame=frame if layout.keep else None,
        compacted=layout.compacted,
        pinned_dropped=layout.pinned_dropped,
    )


# The developer message between prefix, blocks and manifest (those are counted apart).
_FRAME = "\n\n" + context.OPEN + "\n" + "\n" + context.CLOSE + "\n\n"


def _prefix(
    system_messages: Sequence[Mapping[str, Any]], mode: str, names: Mapping[str, str]
) -> str:
    texts = [_text(m.get("content")) for m in system_messages]
    system = "\n\n".join(t for t in texts if t)
    mode_rules = rules(mode, names)
    return escape_block(system) + "\n\n" + mode_rules if system else mode_rules


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text") or "")
            for p in content
            if isinstance(p, Mapping) and p.get("type") in ("text", "input_text")
        )
    return ""


def _reply_budget(body: Mapping[str, Any], options: PackOptions) -> tuple[int, str | None]:
    """Tokens kept for the reply, and the client field to clamp (None: the client set none)."""
    cap = int(options.context_budget * MAX_REPLY_SHARE)
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return min(value, cap), name
    return min(options.reply_reserve_tokens, cap), None


def _body(
    shared: _Shared, content: str, messages: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    upstream = dict(shared.body)
    upstream["messages"] = [{"role": shared.role, "content": content}, *map(dict, messages)]
    if shared.tools:
        upstream["tools"] = [dict(t) for t in shared.tools]
    else:
        upstream.pop("tools", None)
    field_name = shared.reply_field
    if field_name is not None and upstream.get(field_name) != shared.reply:
        upstream[field_name] = shared.reply
    return upstream


def _mutations(
    now: Mapping[str, int], pinned_ids: Sequence[str], table: PageTable, turn: int, at: float
) -> list[Mutation]:
    records = [events.mutation(turn, events.PIN, pid, level=0, at=at) for pid in pinned_ids]
    for page_id, level in sorted(now.items()):
        entry = table.get(page_id)
        was = entry.level if entry is not None and entry.last_mapped == turn - 1 else None
        event = events.COMPRESS if was is not None and level > was else events.MAP
        records.append(events.mutation(turn, event, page_id, level=level, at=at))
    pinned = set(pinned_ids)
    for page_id, entry in sorted(table.entries.items()):
        if entry.last_mapped == turn - 1 and page_id not in now and page_id not in pinned:
            records.append(events.mutation(turn, events.EVICT, page_id, at=at))
    return records
