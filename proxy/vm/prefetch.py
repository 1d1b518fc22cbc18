"""Prefetch: which pages to consider for the working set before the upstream call.

Three steps, so the core stays free of I/O:
1. `plan_prefetch` says what to load, all bounded: the pinned tail's range, a few recent
   turns before it, the summary frontier (segment summaries covering all older history),
   the page table's hot set, and the search for the latest user message, with as many
   hits as could fill the budget (`search_limit`: a pool sized in tokens, not a count);
2. the loop runs the search and loads those pages, then the messages around each hit
   (`around_ids`: a question and its answer are adjacent turns), and a claim's source
   message (a claim is one sentence of it);
3. `gather_candidates` merges everything into one deduplicated `ScoredPage` list with
   relevance normalised to 0..1; a claim hit lends its relevance to its source message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from proxy.vm.bm25 import query_terms
from proxy.vm.ingest import Counters
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page, PageKind, make_page_id, parse_page_id
from proxy.vm.segments import summary_frontier
from proxy.vm.working_set import NEIGHBOUR, ScoredPage

QUERY_TERMS = 10
MIN_TERMS = 3
# A term on more than this share of the pages is too common to search by.
MAX_DF_SHARE = 0.02
RECENT_MESSAGES = 12
HOT = 8
# Hits a search brings, at least and at most; in between, enough to fill the budget
# POOL_FILLS times over with a hit and its two neighbours each, a message counted at most
# SHOWN_TOKENS (a longer one is shown as its passages that match).
SEARCH_HITS = 20
MAX_SEARCH_HITS = 100
POOL_FILLS = 1.5
SHOWN_TOKENS = 200
# Recent turns read before the tail, at most, when the hits cannot fill the budget.
MAX_RECENT = 400


@dataclass(frozen=True, slots=True)
class PrefetchPlan:
    pinned_from: int  # message positions pinned_from.. are the pinned tail
    recent: tuple[int, int]  # message positions lo..hi-1 just before the tail
    summary_ids: tuple[str, ...]
    hot_ids: tuple[str, ...]
    query: str
    search_limit: int = SEARCH_HITS

    def page_ids(self) -> list[str]:
        """Every id to load besides the tail, the recent range and the search hits
        (duplicates removed)."""
        return list(dict.fromkeys([*self.summary_ids, *self.hot_ids]))


def search_query(
    text: str,
    max_terms: int = QUERY_TERMS,
    doc_freq: Callable[[str], int] | None = None,
    max_df: int | None = None,
) -> str:
    """The latest user message as a bounded BM25 query: its `max_terms` most selective
    distinct terms, in their original order. Selective means rarest when `doc_freq` is
    given (terms on more than `max_df` pages are dropped too, keeping at least
    `MIN_TERMS`), else longest. A search costs the postings of its terms, so this keeps it
    cheap however long the history grows, and common words add little to BM25 anyway."""
    terms = query_terms(text)
    if doc_freq is not None:
        freq = {t: doc_freq(t) for t in terms}
        ranked = sorted(terms, key=lambda t: (freq[t], terms.index(t)))
        if max_df is not None:
            rare = [t for t in ranked if freq[t] <= max_df]
            common = [t for t in ranked if freq[t] > max_df]
            ranked = rare + common[: max(0, MIN_TERMS - len(rare))]
    else:
        ranked = sorted(terms, key=lambda t: (-len(t), terms.index(t)))
    chosen = set(ranked[:max_terms])
    return " ".join(t for t in terms if t in chosen)


def pinned_start(counters: Counters, pin_last_turns: int) -> int:
    """Position where the pinned tail starts: the `max(pin_last_turns, 1)`-th last user
    message, never inside the leading system messages (those go in the developer message)."""
    positions = counters.user_positions
    keep = max(pin_last_turns, 1)
    if not positions:
        start = counters.preamble
    else:
        start = positions[-keep] if len(positions) >= keep else positions[0]
    return max(start, counters.preamble)


def search_limit(budget: int, message_tokens: float) -> int:
    """Hits enough to fill `budget` POOL_FILLS times over, each with its two neighbours,
    when messages average `message_tokens`."""
    unit = 3 * min(max(message_tokens, 1.0), SHOWN_TOKENS)
    return max(SEARCH_HITS, min(MAX_SEARCH_HITS, math.ceil(POOL_FILLS * budget / unit)))


def plan_prefetch(
    counters: Counters,
    table: PageTable,
    *,
    turn: int,
    user_text: str,
    pin_last_turns: int,
    recent_messages: int = RECENT_MESSAGES,
    doc_freq: Callable[[str], int] | None = None,
    limit: int = SEARCH_HITS,
) -> PrefetchPlan:
    """What to load for this turn. `doc_freq` (term -> pages containing it), when the
    search backend can tell, makes the query keep the rarest terms of the message;
    `limit`: the search's hits (`search_limit`)."""
    start = pinned_start(counters, pin_last_turns)
    lo = max(counters.preamble, start - recent_messages)
    return PrefetchPlan(
        pinned_from=start,
        recent=(lo, start),
        summary_ids=tuple(summary_frontier(counters)),
        hot_ids=tuple(table.hot_ids(turn, HOT)),
        query=search_query(user_text, doc_freq=doc_freq, max_df=_max_df(counters)),
        search_limit=limit,
    )


def widen_recent(
    plan: PrefetchPlan, hits: Sequence[Page], *, budget: int, message_tokens: float,
    preamble: int,
) -> PrefetchPlan:
    """When the hits (with their neighbours) cannot fill `budget`, the recent turns before
    the tail are taken further back until they could: a question that matches little is
    better served by the latest conversation than by an empty prompt."""
    found = sum(3 * min(p.tokens[0], SHOWN_TOKENS) for p in hits)
    missing = budget - found
    lo, hi = plan.recent
    if missing <= 0 or lo <= preamble:
        return plan
    more = min(MAX_RECENT, math.ceil(missing / max(message_tokens, 1.0)))
    return replace(plan, recent=(max(preamble, lo - more), hi))


def neighbour_ids(page: Page) -> list[str]:
    """The ids of the messages right before and after a message page, or after a claim's
    source message ([] for any other page); ids past either end of the conversation name
    no page and are simply not found."""
    if page.page_id.startswith("msg_"):
        anchors = [page.anchor]
    elif page.kind is PageKind.CLAIM:
        anchors = [p[1] for pid in page.covers if (p := parse_page_id(pid))]
    else:
        return []
    return [make_page_id("msg", a + step) for a in anchors for step in (-1, 1) if a + step >= 0]


def around_ids(
    hits: Iterable[Page], plan: PrefetchPlan, preamble: int, *, neighbours: bool = True,
    after_only: bool = False,
) -> list[str]:
    """Message ids to load beside the hits: the messages before and after each message hit
    (only the one after with `after_only`: a question's answer; none unless `neighbours`:
    the search ranked them already), and a claim's source message with its neighbours;
    none in the pinned tail or the leading system messages."""
    positions: set[int] = set()
    for page in hits:
        steps: tuple[int, ...] = (-1, 0, 1)
        if page.page_id.startswith("msg_"):
            if not neighbours:
                continue
            anchors = [page.anchor]
            if after_only:
                steps = (0, 1)
        elif page.kind is PageKind.CLAIM:
            anchors = [p[1] for pid in page.covers if (p := parse_page_id(pid))]
        else:
            continue
        for anchor in anchors:
            positions.update(anchor + step for step in steps)
    keep = sorted(p for p in positions if preamble <= p < plan.pinned_from)
    return [make_page_id("msg", p) for p in keep]


def gather_candidates(
    *,
    hits: Sequence[tuple[Page, float]],
    pages: Iterable[Page],
    plan: PrefetchPlan,
    exclude: Iterable[str] = (),
) -> list[ScoredPage]:
    """One candidate per page: search hits (relevance = score / best score), a claim's
    relevance lent to its source message (when loaded) in place of the claim, then the
    loaded pages tagged by why they were loaded (the messages around hits as neighbours).
    Pages in `exclude` (pinned) are skipped."""
    skip = set(exclude)
    loaded = {p.page_id: p for p in pages}
    usable = [(p, s) for p, s in hits if p.page_id not in skip and not _in_tail(p, plan)]
    best = max((score for _, score in usable), default=0.0) or 1.0
    reasons = {pid: "summary" for pid in plan.summary_ids}
    reasons |= {pid: "hot" for pid in plan.hot_ids}
    lo, hi = plan.recent
    found: dict[str, ScoredPage] = {}
    for page, score in usable:
        relevance = max(score, 0.0) / best
        if page.kind is PageKind.CLAIM:
            source = next((loaded[c] for c in page.covers if c in loaded), None)
            if source is not None and source.page_id not in skip:
                page = source
        seen = found.get(page.page_id)
        if seen is None or relevance > seen.relevance:
            found[page.page_id] = ScoredPage(page, relevance, "search")
    for pid, page in loaded.items():
        if pid in skip or pid in found or _in_tail(page, plan):
            continue
        reason = reasons.get(pid)
        if reason is None:
            recent = pid.startswith("msg_") and lo <= page.anchor < hi
            reason = "recent" if recent else NEIGHBOUR
        found[pid] = ScoredPage(page, 0.0, reason)
    return list(found.values())


def _in_tail(page: Page, plan: PrefetchPlan) -> bool:
    """Message pages of the pinned tail go upstream verbatim: never candidates."""
    return page.page_id.startswith("msg_") and page.anchor >= plan.pinned_from


def _max_df(counters: Counters) -> int:
    pages = counters.messages + counters.claims + counters.images + counters.segments
    return max(20, int(pages * MAX_DF_SHARE))
