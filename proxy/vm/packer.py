"""`pack_request`: the one call that turns a client request plus memory into the upstream body.

Upstream message order (an append-only window between compactions, see frame.py):
1. one developer (or system, per `vm.developer_role`) message: the client's system prompt,
   the mode's rules and the leading `<VM:MANIFEST_JSON>`; byte-identical from one
   compaction to the next;
2. every message from the window's start to the end, verbatim, as real messages (tool
   exchanges whole), with this turn's block (turn_block.py: the pages recalled for the
   latest user message, as a transcript, and the best other hits) right after the latest
   user message, or closing the leading message with `vm.turn_note = leading`;
and `tools` = the client's tools plus the VM tools (none in passive mode).

How the budget is spent. `vm.context_budget` holds everything (messages, tool schemas,
the reply's max tokens). Less the reply and the fixed parts, the rest goes, in order, to:
the room the fault loop will need (what a model likely faults, sized from the hits, and
the search results and tool-call framing it adds; at most `RESERVE_SHARE` of it, none in
passive mode); the verbatim
window (at most `vm.window_share` of it: beyond that the window restarts at the last
`pin_last_turns` turns); and everything left to the turn's block, which fills it with what
the question needs. Recall wins over the cached prefix: a larger `window_share` favours the
cache.

Counts come from per-page caches (and the frame's stored count), so the cost of packing
grows with the budget and the candidates, not with the conversation. Every client field
other than messages, tools and a clamped max_tokens/max_completion_tokens passes through.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.tokens import TokenCounter, legacy_functions
from proxy.vm import manifest
from proxy.vm.escape import escape_block
from proxy.vm.frame import Frame, frame_key
from proxy.vm.mutations import Clock, Mutation, turn_mutation
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page
from proxy.vm.prompts import rules
from proxy.vm.tools import vm_tool_names, vm_tool_schemas
from proxy.vm.turn_block import (
    EXCERPT_WORDS,
    LEAD_JOIN,
    MORE_WORDS,
    BlockInputs,
)
from proxy.vm.turn_record import Line, TurnRecord, upstream_messages, window_entry
from proxy.vm.window_layout import Layout, Shared, compact, reuse
from proxy.vm.working_set import ScoredPage

# The reply may claim at most this share of the budget when the client asks for more.
MAX_REPLY_SHARE = 0.5
# Room kept for what the fault loop adds besides faulted pages: a search's results (five
# hits with who, when and a passage each) and the assistant's tool calls.
LOOP_RESERVE_TOKENS = 230
# Faults the room is sized for by default (`vm.expected_faults`), what a fault's result
# adds to its page (the turns around it, at most NEIGHBOUR_TOKENS each as counted here, and
# its JSON), and the most of the prompt's room that the loop's reserve and the faults may
# take together.
EXPECTED_FAULTS = 1
NEIGHBOUR_TOKENS = 50
FAULT_FRAMING_TOKENS = 45
RESERVE_SHARE = 0.13
# Below this many tokens of room for faulted pages the tools are not worth offering.
MIN_FAULT_TOKENS = 150
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
    developer_role: str
    turn_note: str
    window_share: float = 0.3
    recall_share: float = 1.0
    expected_faults: int = EXPECTED_FAULTS


@dataclass
class PackedRequest:
    body: dict[str, Any]
    mapped: dict[str, int]  # page id -> level in this turn's <VM:CONTEXT>
    pinned_ids: list[str]  # the messages sent verbatim, in order
    prompt_tokens: int
    reply_tokens: int
    tool_names: dict[str, str]
    # What was sent, as the turn record keeps it (proxy.vm.turn_record); the loop adds
    # what the turn's calls did and logs it.
    record: TurnRecord
    manifest: dict[str, Any]  # the leading and this turn's manifest, merged (for the loop)
    notes: list[str] = field(default_factory=list)
    over_budget: bool = False
    # What to keep in the conversation state for the next turn (None: it compacts).
    frame: Frame | None = None
    compacted: bool = True
    # Pinned turns or exchanges had to leave to make the prompt fit.
    pinned_dropped: bool = False
    pinned_shortened: list[str] = field(default_factory=list)  # pinned, sent reduced/clipped
    pinned_clipped: list[str] = field(default_factory=list)  # those of them cut
    # Tokens kept free for faulted pages, and in all for the fault loop (0 in passive mode).
    fault_tokens: int = 0
    reserve: int = 0
    record_at: float = 0.0  # when it was packed

    def in_view(self) -> dict[str, int]:
        """Page id -> level the model sees, for FaultState: pinned messages at 0, those
        sent reduced at 1 (their note offers level 0), and none of those cut to their
        beginning and end (their note offers a reduction of the whole, which they do not
        show)."""
        seen = {**dict.fromkeys(self.pinned_ids, 0), **self.mapped}
        for page_id in self.pinned_shortened:
            seen[page_id] = 1
        for page_id in self.pinned_clipped:
            seen.pop(page_id, None)
        return seen

    @property
    def mutations(self) -> list[Mutation]:
        """The turn's log event as packed (the loop logs it once the turn has ended)."""
        return [turn_mutation(self.record, self.record_at)]


def pack_request(
    body: Mapping[str, Any],
    *,
    system_messages: Sequence[Mapping[str, Any]],
    tail: Sequence[Page],
    candidates: Sequence[ScoredPage],
    table: PageTable,
    options: PackOptions,
    mode: str,
    counter: TokenCounter,
    turn: int,
    terms: Collection[str] = (),
    around: Mapping[int, Page] | None = None,
    total_pages: int | None = None,
    clock: Clock = time.time,
    frame: Frame | None = None,
    fault_tokens: int | None = None,
) -> PackedRequest:
    """Build the upstream body for one turn. `tail` holds the message pages from the frame's
    start (or, without a frame, the pinned start: prefetch.pinned_start) to the end, in
    order; `candidates` the pages that may be shown, `around` the
    loaded message pages by position (a hit's neighbours), `terms` the latest message's
    search terms. `fault_tokens` overrides the room kept for faults. Does not modify
    `table`."""
    if mode not in MODES:
        raise ValueError(f"pack_request: mode must be one of {MODES}, got {mode!r}")
    client_tools = [t for t in body.get("tools") or () if isinstance(t, Mapping)]
    # Legacy `functions` go upstream as they came (in the body), counted as tools.
    legacy = legacy_functions(body)
    names = vm_tool_names([*client_tools, *legacy])
    tools = client_tools + (vm_tool_schemas(names) if mode != "passive" else [])
    reply, reply_field = _reply_budget(body, options)
    prefix = _prefix(system_messages, mode, names)
    role = options.developer_role
    fmt = counter.format
    costs = {"rules": counter.text(prefix),
             "tools": counter.tools([*tools, *legacy], has_system=True)}
    costs["framing"] = (
        fmt.reply_primer + fmt.per_message + counter.text(role) + counter.text(LEAD_JOIN)
    )
    fixed = sum(costs.values())
    room = options.context_budget - reply - fixed
    faults = reserve = 0
    if mode != "passive":
        available = options.context_budget - reply
        if fault_tokens is None:
            faults = fault_room(candidates, options, available)
        else:
            faults = fault_tokens
        # With a small budget even the loop's own reserve shrinks to its share.
        reserve = min(faults + LOOP_RESERVE_TOKENS, max(faults, int(available * RESERVE_SHARE)))
    shared = Shared(
        body=body,
        prefix=prefix,
        role=role,
        tools=tools,
        names=names,
        reply=reply,
        reply_field=reply_field,
        fixed=fixed,
        costs=costs,
        room=room - reserve,
        window_max=int(room * options.window_share),
        recall_share=options.recall_share,
        key=frame_key(mode, role, counter.name, names),
        mode=mode,
        block_in_lead=options.turn_note == "leading",
        pin_last_turns=options.pin_last_turns,
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
            terms=terms,
            around=around or {},
            total_pages=total_pages,
            more=options.manifest_max_entries,
            in_lead=options.turn_note == "leading",
        ),
    )
    window = [p for p in tail if p.message is not None]
    layout = reuse(shared, frame, window) if frame is not None else None
    if layout is None:
        layout = compact(shared, window)
    packed = _finish(shared, layout, turn, clock())
    packed.fault_tokens, packed.reserve = faults, reserve
    packed.record.position = window[-1].anchor + 1 if window else 0
    return packed


def fault_room(candidates: Sequence[ScoredPage], options: PackOptions, available: int) -> int:
    """Tokens to keep for faulted pages: what `expected_faults` of this turn's hits would
    cost with the turns around them (a long page comes as its reduction, a long neighbour
    as its abstract) and their framing, within `max_fault_tokens_per_turn`; the loop's own
    reserve and this together take at most `RESERVE_SHARE` of what the budget leaves
    after the reply (`available`), so the prompt spends the rest on what it shows."""
    sizes = [min(c.page.tokens[0], c.page.tokens[1]) for c in candidates if c.relevance > 0]
    typical = int(statistics.median(sizes)) if sizes else EXCERPT_WORDS
    unit = typical + 2 * min(typical, NEIGHBOUR_TOKENS) + FAULT_FRAMING_TOKENS
    wanted = unit * min(options.expected_faults, options.max_faults_per_turn)
    most = int(available * RESERVE_SHARE) - LOOP_RESERVE_TOKENS
    return max(0, min(wanted, options.max_fault_tokens_per_turn, most))


def _finish(shared: Shared, layout: Layout, turn: int, at: float) -> PackedRequest:
    block = layout.block
    frame = layout.frame
    levels = {m.page.page_id: m.level for m in block.mapped}
    record = _record(shared, layout, turn)
    messages = upstream_messages(
        role=shared.role, prefix=shared.prefix, lead=frame.manifest, window=layout.messages,
        block=block.content, in_lead=shared.block_in_lead,
    )
    upstream = _body(shared, messages)
    prompt = shared.fixed + frame.tokens + layout.window_tokens + block.tokens
    record.tokens = {
        **shared.costs, "manifest": frame.tokens, "window": layout.window_tokens,
        "block": block.tokens, "prompt": prompt, "reply": shared.reply,
    }
    overshoot = prompt + shared.reply - (shared.room + shared.fixed + shared.reply)
    notes = [*layout.notes, *block.notes]
    if overshoot > 0:
        notes.append(f"prompt exceeds the budget by {overshoot} tokens")
    # (What is mapped and pinned is `mapped` and `pinned_ids`: not listed here again.)
    merged = {**frame.manifest, **(block.manifest or {}), "turn": turn}
    return PackedRequest(
        body=upstream,
        mapped=levels,
        pinned_ids=list(layout.pinned_ids),
        prompt_tokens=prompt,
        reply_tokens=shared.reply,
        tool_names=shared.names,
        record=record,
        manifest=merged,
        notes=notes,
        over_budget=layout.over_budget or overshoot > 0,
        frame=frame if layout.keep else None,
        compacted=layout.compacted,
        pinned_dropped=layout.pinned_dropped,
        pinned_shortened=sorted(layout.shortened),
        pinned_clipped=sorted(layout.clipped),
        record_at=at,
    )


def _record(shared: Shared, layout: Layout, turn: int) -> TurnRecord:
    """The turn record of this prompt (its tokens are set by the caller)."""
    block = layout.block
    record = TurnRecord(
        turn=turn,
        mode=shared.mode,
        role=shared.role,
        in_lead=shared.block_in_lead,
        lead=dict(layout.frame.manifest),
        lines=[Line(m.page.page_id, m.level, m.words) for m in block.mapped],
        terms=list(shared.inputs.terms),
        hint_words=MORE_WORDS,
        prefix=shared.prefix,
    )
    if block.manifest is not None:
        record.more = [str(entry["id"]) for entry in block.manifest.get("more", ())]
        record.omitted = block.manifest.get("omitted")
    for page, message in zip(layout.pinned, layout.messages, strict=True):
        shown, clipped = window_entry(page, message)
        record.window.append(shown)
        if clipped is not None:
            record.clipped[page.page_id] = clipped
    return record


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


def asked_reply(body: Mapping[str, Any]) -> tuple[int, str | None]:
    """The reply's tokens the client asked for and the field it used (0, None: none)."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, name
    return 0, None


def _reply_budget(body: Mapping[str, Any], options: PackOptions) -> tuple[int, str | None]:
    """Tokens kept for the reply, and the client field to clamp (None: the client set none)."""
    cap = int(options.context_budget * MAX_REPLY_SHARE)
    asked, name = asked_reply(body)
    if name is not None:
        return min(asked, cap), name
    return min(options.reply_reserve_tokens, cap), None


def _body(shared: Shared, messages: list[dict[str, Any]]) -> dict[str, Any]:
    upstream = dict(shared.body)
    upstream["messages"] = messages
    if shared.tools:
        upstream["tools"] = [dict(t) for t in shared.tools]
    else:
        upstream.pop("tools", None)
    field_name = shared.reply_field
    if field_name is not None and upstream.get(field_name) != shared.reply:
        upstream[field_name] = shared.reply
    return upstream
