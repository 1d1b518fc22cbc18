"""Choosing the working set: which pages this turn's `<VM:CONTEXT>` shows, and how much of
each. Pure, over a bounded list of candidates.

Relevance to the latest user message decides (BM25, normalised so the best hit is 1.0);
recency, use and page type only order what relevance leaves tied. Within the budget:
1. anti-thrash: pages faulted this turn or the last come first, at the level asked for;
2. then every candidate, best first, and right after it the messages around it (`around`):
   a question and its answer live in adjacent turns, and a search that finds one has found
   the other. A page within its allowance (more for the best hits) is shown whole; a longer
   one as the passages that match the question (`excerpt`), else its abstract;
3. segment summaries only as abstracts, after the turns they would otherwise crowd out.
A page that does not fit is skipped and smaller ones after it are still tried, so the
budget ends up used. What is left out stays reachable by search and `page_fault`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.vm.page_table import PageTable
from proxy.vm.pages import EVICTION_WEIGHT, Page, PageKind

RECENCY_TURNS = 8.0
# No line of the context is shorter than this (its header and a word).
MIN_LINE_TOKENS = 6
# Words an excerpt gets per token of its allowance (English prose runs about 0.75).
WORDS_PER_TOKEN = 0.7
# Why a candidate is one, besides being a search hit.
NEIGHBOUR = "neighbour"
_BROAD = (PageKind.SUMMARY, PageKind.INDEX)
# Summaries count half their relevance; the kinds kept longest get a little more.
_BROADNESS = {PageKind.SUMMARY: 0.5, PageKind.INDEX: 0.5}
_TYPE_BONUS = {
    kind: 0.02 * (max(EVICTION_WEIGHT.values()) - weight)
    for kind, weight in EVICTION_WEIGHT.items()
}

# (page, level, excerpt or None) -> tokens of its line
LineCost = Callable[[Page, int, str | None], int]
# (page, words) -> the passages of a long page that match the question, in about `words`
Excerpt = Callable[[Page, int], str]
# relevance -> the most tokens a page of that relevance may take (whole, or as an excerpt)
Allowance = Callable[[float], int]


# Not frozen, though never changed: a frozen dataclass's __init__ costs several times a
# plain one's, and a turn makes hundreds of these (and of Mapped) while it packs.
@dataclass(slots=True)
class ScoredPage:
    """A candidate: `relevance` is its BM25 score against the current user message,
    normalised so the best hit is 1.0 (0 when it was not a hit); `reason` says why it is
    a candidate (search, neighbour, recent, summary, hot)."""

    page: Page
    relevance: float = 0.0
    reason: str = ""


@dataclass(slots=True)
class Mapped:
    page: Page
    level: int
    tokens: int
    score: float
    reason: str = ""
    # A passage shown instead of the page's rendering at `level` (an excerpt, level 1),
    # and the words it was asked for (what the turn record keeps to show it again).
    text: str | None = None
    words: int = 0


@dataclass
class Selection:
    mapped: list[Mapped]
    unmapped: list[ScoredPage]
    tokens: int  # of the pages' lines
    notes: list[str] = field(default_factory=list)
    priced: int = 0  # what the choice took of its budget: the lines and their marks

    def levels(self) -> dict[str, int]:
        return {m.page.page_id: m.level for m in self.mapped}


def score(candidate: ScoredPage, table: PageTable, turn: int) -> float:
    """Relevance first; the rest only separates pages of about equal relevance."""
    page = candidate.page
    recency = math.exp(-max(turn - page.turn, 0) / RECENCY_TURNS)
    heat = table.heat(page.page_id, turn) if page.page_id in table.entries else 0.0
    return (
        _BROADNESS.get(page.kind, 1.0) * candidate.relevance
        + 0.05 * recency
        + 0.1 * heat
        + _TYPE_BONUS[page.kind]
    )


def rank(
    candidates: Sequence[ScoredPage], table: PageTable, turn: int
) -> list[tuple[float, ScoredPage]]:
    """One entry per page (its best relevance), scored, best first; ties to the later page.
    Made once per turn: the block tries several budgets over the same ranking."""
    unique: dict[str, ScoredPage] = {}
    for candidate in candidates:
        seen = unique.get(candidate.page.page_id)
        if seen is None or candidate.relevance > seen.relevance:
            unique[candidate.page.page_id] = candidate
    return sorted(
        ((score(c, table, turn), c) for c in unique.values()),
        key=lambda sc: (-sc[0], -sc[1].page.anchor, sc[1].page.page_id),
    )


def select_context(
    candidates: Sequence[ScoredPage],
    *,
    budget: int,
    cost: LineCost,
    excerpt: Excerpt,
    table: PageTable,
    turn: int,
    allowance: Allowance,
    around: Mapping[int, Page] | None = None,
    ranked: Sequence[tuple[float, ScoredPage]] | None = None,
    options: dict[Any, tuple[str | None, int] | None] | None = None,
    date_cost: Callable[[str], int] | None = None,
) -> Selection:
    """`allowance(relevance)`: the most tokens a page may take, whole or as the excerpt a
    longer one is shown as (the best hits may take more); `around`: message pages by
    position, for the neighbours of a hit (only loaded ones are shown); `ranked`: the
    candidates as `rank` orders them, when already made; `options`: a cache of how each
    page may be shown, kept by a caller that chooses again in another budget;
    `date_cost(date)`: what the head of a run said on that date costs. With it, a page's
    price includes the marks it may bring to the section (its date's head the first time
    that date is shown, a gap mark when it starts a run), so the choice fits at once; the
    pages' own tokens are `tokens`, the marks are counted apart."""
    options = {} if options is None else options
    scored = rank(candidates, table, turn) if ranked is None else ranked
    unique = {c.page.page_id: c for _, c in scored}
    neighbours = around or {}
    placed: dict[str, Mapped] = {}
    notes: list[str] = []
    used = lines = 0
    anchors: set[int] = set()
    dates: set[str] = set()

    def marks(page: Page) -> tuple[int, str | None]:
        if date_cost is None or page.kind in _BROAD:
            return 0, None
        extra = 0
        if page.anchor - 1 not in anchors and page.anchor + 1 not in anchors:
            extra += 1  # a run of its own: a gap mark may come before it
        when = page.extra.get("said")
        if isinstance(when, str) and when and when not in dates:
            return extra + date_cost(when), when
        return extra, None

    def place(value: float, candidate: ScoredPage, levels: Sequence[int], share: float) -> bool:
        nonlocal used, lines
        page = candidate.page
        page_id = page.page_id
        if page_id in placed:
            return True
        extra, when = marks(page)
        most = allowance(share)
        for level in levels:
            key = (page_id, level, most)
            # (The cache looked up here: a call per level costs more than the lookup.)
            shown = options[key] if key in options else _shown(page, level, most)
            if shown is None:
                continue
            text, tokens = shown
            if used + tokens + extra <= budget:
                words = int(most * WORDS_PER_TOKEN) if text is not None else 0
                placed[page_id] = Mapped(
                    page, level, tokens, value, candidate.reason, text, words
                )
                used += tokens + extra
                lines += tokens
                anchors.add(page.anchor)
                if when is not None:
                    dates.add(when)
                return True
        return False

    def _shown(page: Page, level: int, most: int) -> tuple[str | None, int] | None:
        """How a page is shown at `level` within `most` tokens (None: not at that level);
        the same whatever the budget, so kept across the choices a block makes."""
        key = (page.page_id, level, most)
        if key in options:
            return options[key]
        text = None
        found: tuple[str | None, int] | None
        if level == 0 and page.tokens[0] > most:
            found = None
        else:
            if level == 1 and page.kind not in _BROAD and page.tokens[0] > most:
                text = excerpt(page, int(most * WORDS_PER_TOKEN))
            found = (text, cost(page, level, text))
        options[key] = found
        return found

    sticky = [sc for sc in scored if table.faulted_recently(sc[1].page.page_id, turn)]
    for value, candidate in sticky:
        wanted = table.preferred_level(candidate.page.page_id, 2)
        if not place(value, candidate, range(wanted, 3), candidate.relevance):
            notes.append(f"{candidate.page.page_id} faulted recently but did not fit")
    for value, candidate in scored:
        if budget - used < MIN_LINE_TOKENS:
            break  # nothing more can fit
        page = candidate.page
        if page.kind in _BROAD:
            continue
        share = candidate.relevance
        if place(value, candidate, (0, 1, 2), share) and page.page_id.startswith("msg_"):
            # The turns around a hit get its allowance, a little less.
            for position in (page.anchor - 1, page.anchor + 1):
                near = neighbours.get(position)
                if near is not None and near.page_id not in unique:
                    place(value, ScoredPage(near, 0.0, NEIGHBOUR), (0, 1, 2), share / 2)
                elif near is not None:
                    place(value, unique[near.page_id], (0, 1, 2), share / 2)
    for value, candidate in scored:
        if candidate.page.kind in _BROAD:
            place(value, candidate, (2,), 0.0)
    unmapped = [c for _, c in scored if c.page.page_id not in placed]
    chosen = list(placed.values())
    keys = [(-m.score, m.page.page_id) for m in chosen]  # made in one pass: no call per line
    mapped = [chosen[i] for i in sorted(range(len(keys)), key=keys.__getitem__)]
    return Selection(mapped, unmapped, lines, notes, used)
