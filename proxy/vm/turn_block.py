"""This turn's block: the pages the latest message needs beyond the frozen context.

A developer message of its own, placed late in the prompt (right after the latest user
message), so the prefix before it stays what the previous turn sent:

    <VM:CONTEXT>
    [msg_12 user] (abstract) ...
    </VM:CONTEXT>
    <VM:MANIFEST_JSON>
    {"turn": 41, "mapped": [...], "available": [...], "omitted": 830}
    </VM:MANIFEST_JSON>

It maps, within its budget, the search hits for the latest user message, the pages faulted
this turn or the last (anti-thrash) and the hot ones, unless the frozen context already
shows them at that detail or the window holds them verbatim; its manifest lists the best
remaining hits. No block at all when there is nothing to add.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.tokens import TokenCounter
from proxy.vm import context, manifest
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page
from proxy.vm.working_set import FULL_RELEVANCE, LATEST_SUMMARY, Mapped, ScoredPage, select_context

# A mapped page also costs its manifest entry; about this many tokens.
MANIFEST_ENTRY_TOKENS = 20
# Hits listed (not mapped) in the block's manifest, at most.
AVAILABLE = 3
_DYNAMIC_REASONS = ("search", "hot", LATEST_SUMMARY)
# The block between its two sections (counted apart from them).
_FRAME = context.OPEN + "\n" + "\n" + context.CLOSE + "\n"


@dataclass(frozen=True, slots=True)
class BlockInputs:
    candidates: Sequence[ScoredPage]
    table: PageTable
    turn: int
    counter: TokenCounter
    role: str
    full_pages: int
    max_full: int  # the most one page may take in full (a share of the whole budget)
    total_pages: int | None = None


@dataclass
class Block:
    mapped: list[Mapped] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    content: str | None = None  # None: no block this turn
    tokens: int = 0  # as a whole message
    notes: list[str] = field(default_factory=list)


def in_window(page: Page, start: int) -> bool:
    """Is this page (a message, or a claim or image taken from one) sent verbatim in a
    window starting at message position `start`? Summaries are not: they cover more."""
    if start < 0:
        return False
    return page.page_id.partition("_")[0] in ("msg", "claim", "img") and page.anchor >= start


def build_block(
    inputs: BlockInputs, *, start: int, frozen: Mapping[str, int], budget: int
) -> Block:
    counter = inputs.counter
    table, turn = inputs.table, inputs.turn
    pool = [c for c in inputs.candidates if _wanted(c, start, frozen, table, turn)]
    overhead = counter.format.per_message + counter.text(inputs.role) + counter.text(_FRAME)
    if not pool or budget <= overhead:
        return Block()
    by_id = {c.page.page_id: c.page for c in pool}

    def cost(page: Page, level: int) -> int:
        return context.block_tokens(page, level, counter) + MANIFEST_ENTRY_TOKENS

    room = budget - overhead
    while True:
        selection = select_context(
            pool, budget=max(room, 0), cost=cost, table=table, turn=turn,
            full_pages=inputs.full_pages, max_full=inputs.max_full,
        )
        # The frozen context already shows these at this detail or more.
        mapped = [m for m in selection.mapped if frozen.get(m.page.page_id, 4) > m.level]
        shown = {*frozen, *(m.page.page_id for m in mapped)}
        hits = sorted(
            (c for c in pool if c.relevance > 0 and c.page.page_id not in shown),
            key=lambda c: (-c.relevance, c.page.anchor, c.page.page_id),
        )
        data = manifest.build_delta(
            turn=turn,
            mapped=mapped,
            available=[c.page for c in hits[:AVAILABLE]],
            omitted=_omitted(inputs.total_pages, len(shown) + len(hits[:AVAILABLE])),
        )
        ordered = context.order_blocks(mapped)
        blocks = sum(context.block_tokens(m.page, m.level, counter) for m in ordered)
        tokens = overhead + blocks + manifest.manifest_tokens(data, counter, by_id)
        overshoot = tokens - budget
        if overshoot <= 0 or not selection.mapped:
            break
        room = selection.tokens - overshoot
    if overshoot > 0 or not (mapped or data["available"]):
        return Block(notes=[] if overshoot <= 0 else ["no room for this turn's block"])
    content = context.render_context(ordered) + "\n" + manifest.render_manifest(data)
    return Block(ordered, data, content, tokens, selection.notes)


def _wanted(
    candidate: ScoredPage, start: int, frozen: Mapping[str, int], table: PageTable, turn: int
) -> bool:
    page = candidate.page
    if in_window(page, start):
        return False
    recent = table.faulted_recently(page.page_id, turn)
    if page.page_id in frozen:
        # Only to show more of it than the frozen context does.
        level = frozen[page.page_id]
        return level > 0 and (
            candidate.relevance >= FULL_RELEVANCE
            or (recent and table.preferred_level(page.page_id, 2) < level)
        )
    return recent or candidate.relevance > 0 or candidate.reason in _DYNAMIC_REASONS


def _omitted(total: int | None, shown: int) -> int | None:
    return None if total is None else max(0, total - shown)
