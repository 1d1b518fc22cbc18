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

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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
    scored = [(score(c, table, turn), c) for c in unique.values()]
    # The keys made in one pass (a key function would cost a call per candidate).
    keys = [(-value, -c.page.anchor, c.page.page_id) for value, c in scored]
    return [scored[i] for i in sorted(range(len(keys)), key=keys.__getitem__)]


# The steps of a choice, in the order it takes them: the pages faulted lately, then each
# candidate best first followed by the turns around it (taken only when it was placed),
# then the summaries.
_STICKY, _MAIN, _NEAR, _BROAD_STEP = range(4)


# (kind, value, candidate, levels, share): what the allowance is asked for
_Step = tuple[int, float, ScoredPage, Sequence[int], float]
_LEVELS = (0, 1, 2)


class _Run(NamedTuple):
    """A choice made, and how to take it up again at any of its comparisons: for each,
    what was compared with the budget and the state before its step (its index, tokens
    used, tokens of lines, pages placed and notes so far)."""

    budget: int
    compared: list[int]
    states: list[tuple[int, int, int, int, int]]
    placed: dict[str, Mapped]
    whens: list[str | None]  # the date each placement added to the section's, in order
    notes: list[str]
    selection: Selection


class Chooser:
    """Which candidates the context shows, and at what level, over one ranking, in any
    budget (`choose(budget) -> Selection`).

    `allowance(relevance)`: the most tokens a page may take, whole or as the excerpt a
    longer one is shown as (the best hits may take more); `around`: message pages by
    position, for the neighbours of a hit (only loaded ones are shown); `ranked`: the
    candidates as `rank` orders them, when already made; `options`: a cache of how each
    page may be shown, kept by a caller that chooses again in another budget;
    `date_cost(date)`: what the head of a run said on that date costs. With it, a page's
    price includes the marks it may bring to the section (its date's head the first time
    that date is shown, a gap mark when it starts a run), so the choice fits at once; the
    pages' own tokens are `tokens`, the marks are counted apart.

    What does not depend on the budget is made once: the steps (each candidate, and the
    turns around it) and how each page may be shown. And every step of a choice decides
    by comparing what it would take with the budget, so a choice in another budget is the
    same as the last one up to the first comparison that comes out otherwise: it starts
    from there (with the state the last one had then), and is the last one itself when
    no comparison changes. The turn's block prices a first choice, then chooses again in
    the room it really left."""

    def __init__(
        self,
        candidates: Sequence[ScoredPage],
        *,
        cost: LineCost,
        excerpt: Excerpt,
        table: PageTable,
        turn: int,
        allowance: Allowance,
        around: Mapping[int, Page] | None = None,
        ranked: Sequence[tuple[float, ScoredPage]] | None = None,
        options: dict[Any, tuple[str | None, int] | None] | None = None,
        date_cost: Callable[[str], int] | None = None,
    ) -> None:
        self._options = {} if options is None else options
        self._cost = cost
        self._excerpt = excerpt
        self._date_cost = date_cost
        scored = rank(candidates, table, turn) if ranked is None else ranked
        self._scored = scored
        unique = {c.page.page_id: c for _, c in scored}
        neighbours = around or {}
        self._allowance = allowance
        steps: list[_Step] = [
            (_STICKY, value, candidate, range(table.preferred_level(page_id, 2), 3),
             candidate.relevance)
            for value, candidate in scored
            if table.faulted_recently(page_id := candidate.page.page_id, turn)
        ]  # fmt: skip
        for value, candidate in scored:
            page = candidate.page
            if page.kind in _BROAD:
                continue
            share = candidate.relevance
            steps.append((_MAIN, value, candidate, _LEVELS, share))
            if not page.page_id.startswith("msg_"):
                continue
            # The turns around a hit get its allowance, a little less.
            for position in (page.anchor - 1, page.anchor + 1):
                near = neighbours.get(position)
                if near is not None:
                    found = unique.get(near.page_id)
                    beside = ScoredPage(near, 0.0, NEIGHBOUR) if found is None else found
                    steps.append((_NEAR, value, beside, _LEVELS, share / 2))
        self._broad_from = len(steps)
        steps.extend(
            (_BROAD_STEP, value, candidate, (2,), 0.0)
            for value, candidate in scored
            if candidate.page.kind in _BROAD
        )
        self._steps = steps
        self._last: _Run | None = None

    def _shown(self, page: Page, level: int, most: int) -> tuple[str | None, int] | None:
        """How a page is shown at `level` within `most` tokens (None: not at that level);
        the same whatever the budget, so kept across choices."""
        key = (page.page_id, level, most)
        options = self._options
        if key in options:
            return options[key]
        text = None
        found: tuple[str | None, int] | None
        if level == 0 and page.tokens[0] > most:
            found = None
        else:
            if level == 1 and page.kind not in _BROAD and page.tokens[0] > most:
                text = self._excerpt(page, int(most * WORDS_PER_TOKEN))
            found = (text, self._cost(page, level, text))
        options[key] = found
        return found

    def choose(self, budget: int) -> Selection:
        last = self._last
        compared: list[int] = []
        states: list[tuple[int, int, int, int, int]] = []
        placed: dict[str, Mapped] = {}
        whens: list[str | None] = []
        notes: list[str] = []
        first = used = lines = 0
        if last is not None:
            low, high = min(last.budget, budget), max(last.budget, budget)
            changed = next(
                (i for i, v in enumerate(last.compared) if low < v <= high), None
            )
            if changed is None:
                return last.selection  # (its comparisons come out alike in either budget)
            first, used, lines, count, noted = last.states[changed]
            compared = last.compared[:changed]
            states = last.states[:changed]
            placed = dict(itertools.islice(last.placed.items(), count))
            whens = last.whens[:count]
            notes = last.notes[:noted]
        anchors = {m.page.anchor for m in placed.values()}
        dates = {when for when in whens if when is not None}
        date_cost = self._date_cost
        allowance = self._allowance
        options = self._options
        steps = self._steps
        # A turn taken up again is one whose hit was placed (only those are compared).
        hit_placed = True
        index = first
        while index < len(steps):
            kind, value, candidate, levels, share = steps[index]
            state = None
            if kind == _MAIN:
                state = (index, used, lines, len(placed), len(notes))
                # Nothing more can fit: on to the summaries.
                compared.append(used + MIN_LINE_TOKENS)
                states.append(state)
                if used + MIN_LINE_TOKENS > budget:
                    index = self._broad_from
                    continue
            elif kind == _NEAR and not hit_placed:
                index += 1
                continue
            index += 1
            page = candidate.page
            page_id = page.page_id
            if page_id in placed:
                hit_placed = True
                continue
            # The marks a line may bring to the section: a gap mark when it starts a run
            # of its own, its date's head the first time that date is shown.
            extra = 0
            new_date = None
            if date_cost is not None and page.kind not in _BROAD:
                anchor = page.anchor
                if anchor - 1 not in anchors and anchor + 1 not in anchors:
                    extra = 1
                when = page.extra.get("said")
                if isinstance(when, str) and when and when not in dates:
                    extra += date_cost(when)
                    new_date = when
            most = allowance(share)
            fits = False
            for level in levels:
                key = (page_id, level, most)
                # (The cache looked up here: a call per level costs more than the lookup.)
                shown = options[key] if key in options else self._shown(page, level, most)
                if shown is None:
                    continue
                text, tokens = shown
                if state is None:  # (the state before this step: nothing changed in it yet)
                    state = (index - 1, used, lines, len(placed), len(notes))
                compared.append(used + tokens + extra)
                states.append(state)
                if used + tokens + extra <= budget:
                    words = int(most * WORDS_PER_TOKEN) if text is not None else 0
                    placed[page_id] = Mapped(
                        page, level, tokens, value, candidate.reason, text, words
                    )
                    whens.append(new_date)
                    used += tokens + extra
                    lines += tokens
                    anchors.add(page.anchor)
                    if new_date is not None:
                        dates.add(new_date)
                    fits = True
                    break
            if kind == _MAIN:
                hit_placed = fits
            elif kind == _STICKY and not fits:
                notes.append(f"{page_id} faulted recently but did not fit")
        unmapped = [c for _, c in self._scored if c.page.page_id not in placed]
        chosen = list(placed.values())
        keys = [(-m.score, m.page.page_id) for m in chosen]  # made in one pass: no call per line
        mapped = [chosen[i] for i in sorted(range(len(keys)), key=keys.__getitem__)]
        selection = Selection(mapped, unmapped, lines, notes, used)
        self._last = _Run(budget, compared, states, placed, whens, notes, selection)
        return selection
