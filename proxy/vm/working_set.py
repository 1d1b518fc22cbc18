"""Choosing what goes into `<VM:CONTEXT>`: pure, over a bounded list of candidates.

Each candidate gets a score from its relevance to the current user message (BM25, passed in),
recency, importance, page type (pages.EVICTION_WEIGHT: claims are kept longest) and access
history (page table heat). Then, within the token budget:
1. anti-thrash: pages faulted this turn or the last are placed first, at the level the model
   asked for (compressed further only if they cannot fit otherwise); then the latest segment
   summary as an abstract (reason `LATEST_SUMMARY`), so the model always has its bearings;
2. the `full_pages` best candidates that are clearly relevant (relevance >= 0.5) are
   placed at full detail (level 0, or level 1 if the page is large);
3. every other candidate, best first, is placed as its level-2 abstract: compress before
   evicting, breadth before depth;
4. spare budget upgrades placed pages, best first (summaries last), to level 1, then 0.
Whatever does not fit stays available (the manifest lists it at level 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from proxy.vm.page_table import PageTable
from proxy.vm.pages import EVICTION_WEIGHT, Page, PageKind

# A single page may take at most this share of the context budget at level 0.
MAX_FULL_SHARE = 0.25
RECENCY_TURNS = 8.0
# Candidates at least this relevant may be mapped in full before the others get abstracts.
FULL_RELEVANCE = 0.5

BlockCost = Callable[[Page, int], int]
_BROAD = (PageKind.SUMMARY, PageKind.INDEX)
LATEST_SUMMARY = "latest_summary"


@dataclass(frozen=True, slots=True)
class ScoredPage:
    """A candidate: `relevance` is its BM25 score against the current user message,
    normalised so the best hit is 1.0 (0 when it was not a hit); `reason` says why it is
    a candidate (search, recent, summary, claim, hot)."""

    page: Page
    relevance: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Mapped:
    page: Page
    level: int
    tokens: int
    score: float
    reason: str = ""


@dataclass
class Selection:
    mapped: list[Mapped]
    unmapped: list[ScoredPage]
    tokens: int
    notes: list[str] = field(default_factory=list)

    def levels(self) -> dict[str, int]:
        return {m.page.page_id: m.level for m in self.mapped}


def score(candidate: ScoredPage, table: PageTable, turn: int) -> float:
    page = candidate.page
    recency = math.exp(-max(turn - page.turn, 0) / RECENCY_TURNS)
    type_bonus = max(EVICTION_WEIGHT.values()) - EVICTION_WEIGHT[page.kind]
    return (
        3.0 * candidate.relevance
        + 0.8 * recency
        + 0.5 * page.importance
        + 1.0 * table.heat(page.page_id, turn)
        + 0.5 * type_bonus
    )


def select_context(
    candidates: Sequence[ScoredPage],
    *,
    budget: int,
    cost: BlockCost,
    table: PageTable,
    turn: int,
    full_pages: int,
    max_full: int | None = None,
) -> Selection:
    """`max_full`: the most tokens one page may take at level 0 or 1 (default: a quarter
    of `budget`; a small block of a larger prompt passes the prompt's own limit)."""
    unique: dict[str, ScoredPage] = {}
    for candidate in candidates:
        seen = unique.get(candidate.page.page_id)
        if seen is None or candidate.relevance > seen.relevance:
            unique[candidate.page.page_id] = candidate
    scored = sorted(
        ((score(c, table, turn), c) for c in unique.values()),
        key=lambda sc: (-sc[0], sc[1].page.anchor, sc[1].page.page_id),
    )
    sticky = [sc for sc in scored if table.faulted_recently(sc[1].page.page_id, turn)]
    others = [sc for sc in scored if not table.faulted_recently(sc[1].page.page_id, turn)]
    placed: dict[str, Mapped] = {}
    used = 0
    known: dict[tuple[str, int], int] = {}

    def price(page: Page, level: int) -> int:
        key = (page.page_id, level)
        found = known.get(key)
        if found is None:
            found = known[key] = cost(page, level)
        return found

    if max_full is None:
        max_full = max(1, int(budget * MAX_FULL_SHARE))
    notes: list[str] = []

    def place(value: float, candidate: ScoredPage, levels: Sequence[int]) -> bool:
        nonlocal used
        page = candidate.page
        for level in levels:
            tokens = price(page, level)
            if used + tokens <= budget:
                placed[page.page_id] = Mapped(page, level, tokens, value, candidate.reason)
                used += tokens
                return True
        return False

    for value, candidate in sticky:
        wanted = table.preferred_level(candidate.page.page_id, 2)
        if not place(value, candidate, range(wanted, 3)):
            notes.append(f"{candidate.page.page_id} faulted recently but did not fit")
    for value, candidate in others:
        if candidate.reason == LATEST_SUMMARY:
            place(value, candidate, (2,))
    relevant = [
        sc for sc in others if sc[1].relevance >= FULL_RELEVANCE and sc[1].page.kind not in _BROAD
    ][:full_pages]
    for value, candidate in relevant:
        page = candidate.page
        levels = [lv for lv in (0, 1) if page.tokens[lv] <= max_full]
        if levels:
            place(value, candidate, levels)
    for value, candidate in others:
        if candidate.page.page_id not in placed:
            place(value, candidate, (2,))
    # Detail goes to specific pages before broad summaries get longer.
    for value, candidate in sorted(scored, key=lambda sc: sc[1].page.kind in _BROAD):
        current = placed.get(candidate.page.page_id)
        if current is None or current.level == 0:
            continue
        page = candidate.page
        for level in range(current.level):
            if level == 0 and page.tokens[0] > max_full:
                continue
            tokens = price(page, level)
            if used - current.tokens + tokens <= budget:
                placed[page.page_id] = Mapped(page, level, tokens, value, candidate.reason)
                used += tokens - current.tokens
                break
    unmapped = [c for _, c in scored if c.page.page_id not in placed]
    mapped = sorted(placed.values(), key=lambda m: (-m.score, m.page.page_id))
    return Selection(mapped, unmapped, used, notes)
