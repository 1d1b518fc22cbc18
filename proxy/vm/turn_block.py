"""This turn's block: the pages recalled for the latest message, and the best other hits.

A message of its own in the leading role, placed late in the prompt (right after the
latest user message), so the prefix before it stays what the previous turn sent:

    <VM:CONTEXT>
    — 8 May 2023 —
    [msg_12] Maya: ...
    </VM:CONTEXT>
    <VM:MANIFEST_JSON>
    {"turn": 41, "more": [{"id": "msg_7", "who": "Jon", "hint": "..."}], "omitted": 830}
    </VM:MANIFEST_JSON>

It takes the room the budget leaves: what the question needs is worth more than a
longer cached prefix. The choice is working_set.py's; this module prices, renders and
fits it. No block at all when there is nothing to add.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.tokens import TokenCounter
from proxy.vm import context, manifest
from proxy.vm.excerpt import excerpt
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page
from proxy.vm.working_set import (
    NEIGHBOUR,
    Chooser,
    Mapped,
    ScoredPage,
    Selection,
    rank,
)

# Hits named in `more` (not shown), at most, the words of the passage each gets, and
# about what an entry costs.
MORE = 5
MORE_WORDS = 18
MORE_ENTRY_TOKENS = 45
# A page may take FULL_SHARE of the block's room, and the best hits up to BEST_SHARE more
# (by relevance squared), at least MIN_FULL_TOKENS; a longer one is shown as its passages
# that match, in that allowance. So a large budget shows long pages whole, and a long
# article that is the best hit is not cut to a few sentences.
MIN_FULL_TOKENS = 150
FULL_SHARE = 0.08
BEST_SHARE = 0.3
EXCERPT_WORDS = 110
# Fitting the block: at most this many choices, stopping within SLACK tokens of the room.
ATTEMPTS = 4
SLACK = 12
# A choice within 1/CLOSE_ENOUGH of the room is kept (another would cost a choice again).
CLOSE_ENOUGH = 40
# Candidates kept for a choice: enough to fill the block this many times over.
POOL_FILLS = 3
MARGIN_LINES = 20
# The block between its two sections (counted apart from them), and before it when it
# closes the leading message.
_FRAME = "\n"
LEAD_JOIN = "\n\n"


@dataclass(frozen=True, slots=True)
class BlockInputs:
    candidates: Sequence[ScoredPage]
    table: PageTable
    turn: int
    counter: TokenCounter
    role: str
    terms: Collection[str]  # the latest message's search terms
    # Loaded message pages by position: the neighbours a hit brings along.
    around: Mapping[int, Page] = field(default_factory=dict)
    total_pages: int | None = None
    more: int = MORE  # hits named in the manifest, at most
    # The block closes the leading message (vm.turn_note = leading) instead of being a
    # message of its own: its framing is a paragraph break, not a message's.
    in_lead: bool = False
    # Pages the pinned window left out to fit, though they come after its start.
    unpinned: frozenset[str] = frozenset()


@dataclass
class Block:
    mapped: list[Mapped] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    content: str | None = None  # None: no block this turn
    tokens: int = 0  # as a whole message
    notes: list[str] = field(default_factory=list)


# Pages the window sends verbatim from its start on (in_window).
_SENT = ("msg", "claim", "img")


def in_window(page: Page, start: int) -> bool:
    """Is this page (a message, or a claim or image taken from one) sent verbatim in a
    window starting at message position `start`? Summaries are not: they cover more."""
    if start < 0 or page.anchor < start:
        return False
    return page.page_id.partition("_")[0] in _SENT


def build_block(inputs: BlockInputs, *, start: int, budget: int) -> Block:
    counter = inputs.counter
    unpinned = inputs.unpinned
    # (in_window, without a call for each of a few hundred pages; the pages the window
    # left out to fit are not in it)
    pool = [
        c for c in inputs.candidates
        if start < 0 or (p := c.page).anchor < start or p.page_id.partition("_")[0] not in _SENT
        or p.page_id in unpinned
    ]  # fmt: skip
    around = {
        pos: p for pos, p in inputs.around.items()
        if start < 0 or p.anchor < start or p.page_id.partition("_")[0] not in _SENT
        or p.page_id in unpinned
    }  # fmt: skip
    if inputs.in_lead:
        overhead = counter.text(LEAD_JOIN) + counter.text(_FRAME)
    else:
        overhead = counter.format.per_message + counter.text(inputs.role) + counter.text(_FRAME)
    if not pool or budget <= overhead:
        return Block()
    excerpts: dict[tuple[str, int], str] = {}

    def passage(page: Page, words: int) -> str:
        key = (page.page_id, words)
        found = excerpts.get(key)
        if found is None:
            found = excerpts[key] = excerpt(page.text, inputs.terms, words)
        return found

    def cost(page: Page, level: int, text: str | None) -> int:
        return context.line_tokens(page, level, counter, text)

    date_costs: dict[str, int] = {}

    def date_cost(when: str) -> int:
        found = date_costs.get(when)
        if found is None:
            found = date_costs[when] = counter.text(context.date_head(when))
        return found

    allowances: dict[float, int] = {}

    def allowance(relevance: float) -> int:
        found = allowances.get(relevance)
        if found is None:
            share = FULL_SHARE + BEST_SHARE * max(relevance, 0.0) ** 2
            found = allowances[relevance] = max(MIN_FULL_TOKENS, int(budget * share))
        return found

    # The turns around a hit are placed with it (`around`); ranked on their own they would
    # only come after every hit, at a cost to every choice.
    own = [c for c in pool if c.reason != NEIGHBOUR or c.relevance > 0]
    left_out = [c for c in pool if c.page.page_id in unpinned] if unpinned else []
    ranked = _enough(rank(own, inputs.table, inputs.turn), budget, allowance)
    shown_as: dict[Any, tuple[str | None, int] | None] = {}
    hints: dict[str, str] = {}

    def hint(page: Page) -> str:
        found = hints.get(page.page_id)
        if found is None:
            found = hints[page.page_id] = excerpt(page.text, inputs.terms, MORE_WORDS)
        return found

    chooser = Chooser(
        pool, cost=cost, excerpt=passage, table=inputs.table, turn=inputs.turn,
        allowance=allowance, around=around, ranked=ranked, options=shown_as,
        date_cost=date_cost,
    )  # fmt: skip
    Attempt = tuple[list[Mapped], dict[str, Any], int, list[str], int]
    attempts: dict[int, tuple[Selection, Attempt]] = {}

    def attempt(room: int) -> Attempt:
        selection = chooser.choose(max(room, 0))
        # The same choice in another room (the chooser hands the same one back) is priced
        # the same.
        seen = attempts.get(id(selection))
        if seen is not None and seen[0] is selection:
            return seen[1]
        unmapped = [c for c in selection.unmapped if c.relevance > 0]
        if left_out:
            # What the window left out is named even when the ranking cut it (_enough).
            placed = {m.page.page_id for m in selection.mapped}
            placed.update(c.page.page_id for c in unmapped)
            unmapped += [c for c in left_out if c.page.page_id not in placed]
        hits = heapq.nsmallest(  # sorted(...)[: inputs.more], without sorting the rest
            more_entries, unmapped, key=lambda c: (-c.relevance, c.page.anchor, c.page.page_id)
        )
        more = [(c.page, hint(c.page)) for c in hits]
        # (Each page is mapped once: the choice keeps them by id.)
        omitted = _omitted(inputs.total_pages, len(selection.mapped) + len(more))
        data = manifest.build_delta(turn=inputs.turn, more=more, omitted=omitted)
        tokens = (
            overhead
            + selection.tokens
            + context.structure_tokens(selection.mapped, counter)
            + manifest.manifest_tokens(data, counter)
            # Counted by parts, a line's edges can merge differently in the section (rarely
            # one token more): a token per MARGIN_LINES lines is kept for that.
            + 1 + len(selection.mapped) // MARGIN_LINES
        )
        made = (selection.mapped, data, tokens, selection.notes, selection.priced)
        attempts[id(selection)] = (selection, made)
        return made

    # The manifest and the section's date heads and gap marks are priced once the choice
    # is known: a first guess keeps room for them; the second choice is made in the room
    # they really left (they change little with it), and only an overshoot makes a third.
    best: tuple[list[Mapped], dict[str, Any], int, list[str]] | None = None
    # Every step the window left out is named if the manifest has room for them all; else
    # as many as it names hits.
    for more_entries in dict.fromkeys((inputs.more + len(left_out), inputs.more)):
        attempts.clear()
        room = budget - overhead - _guess(ranked, more_entries)
        for tried in range(ATTEMPTS):
            mapped, data, tokens, notes, priced = attempt(room)
            if tokens <= budget:
                best = (mapped, data, tokens, notes)
                if budget - tokens < max(SLACK, budget // CLOSE_ENOUGH) or tried:
                    break
                room = priced + budget - tokens
            else:
                # Below what this choice took, so that the next one must leave a page out.
                room = priced - (tokens - budget)
        if best is not None:
            break
    if best is None:
        return Block(notes=["no room for this turn's block"])
    mapped, data, tokens, notes = best
    if not (mapped or data["more"]):
        return Block()
    ordered = context.order_lines(mapped)
    return Block(ordered, data, render_block(ordered, data), tokens, notes)


def render_block(mapped: Sequence[Mapped], data: Mapping[str, Any]) -> str:
    """The block's text: its `<VM:CONTEXT>` lines (`mapped` as `context.order_lines`
    orders them), then its manifest (the turn record
    renders a block again with this, so a replay cannot drift from what was sent)."""
    return context.render_ordered(mapped) + _FRAME + manifest.render_manifest(data)


def _enough(
    ranked: list[tuple[float, ScoredPage]], budget: int, allowance: Callable[[float], int]
) -> list[tuple[float, ScoredPage]]:
    """The best candidates, as many as could fill the budget POOL_FILLS times over (a
    candidate at what it may take at most, a message with the two around it): the rest
    could only be placed if all of these were left out, and each costs every choice."""
    total, cut = 0, len(ranked)
    for index, (_, candidate) in enumerate(ranked):
        page = candidate.page
        unit = 3 if page.page_id.startswith("msg_") else 1
        total += unit * min(page.tokens[0], allowance(candidate.relevance))
        if total > budget * POOL_FILLS:
            cut = index + 1
            break
    return ranked[:cut]


def _guess(ranked: Sequence[tuple[float, ScoredPage]], more: int) -> int:
    """Room to keep for the manifest before it is priced (the choice prices the section's
    own marks as it goes)."""
    return 40 + MORE_ENTRY_TOKENS * min(more, len(ranked))


def _omitted(total: int | None, shown: int) -> int | None:
    return None if total is None else max(0, total - shown)
