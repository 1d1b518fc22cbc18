"""Search hits as the model should read them, pure: the store ranks by BM25, this refines
its top hits before they become a `search_pages` result.

Three things BM25 cannot see (and summaries, which cover many turns, go after the turns
that matched):
- a page that states what the question asks about ("the lab door code is 51297") is worth
  more than one that only mentions it ("I tried to remember the lab door code");
- when a subject was stated more than once with different values, the newest statement
  is the current one: it goes first, and the older ones are marked `superseded_by` it;
- a claim and the message it was taken from say the same thing: they take one result
  slot (the claim, naming its `source`), so the other slots go to other pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from proxy.vm.bm25 import search_tokens
from proxy.vm.claims import statements
from proxy.vm.pages import Page, PageKind

# Hits fetched per result asked for: room for the refinement to reorder and collapse.
POOL_FACTOR = 3
STATEMENT_BOOST = 0.25

_STATING = (PageKind.CLAIM, PageKind.TRANSCRIPT)
_BROAD = (PageKind.SUMMARY, PageKind.INDEX)


@dataclass(frozen=True, slots=True)
class RankedHit:
    page: Page
    score: float
    source: str | None = None
    superseded_by: str | None = None


@dataclass(slots=True)
class _Entry:
    page: Page
    score: float
    order: int
    stated: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    superseded_by: str | None = None
    dropped: bool = False


def refine_hits(query: str, hits: Sequence[tuple[Page, float]], limit: int) -> list[RankedHit]:
    """The best `limit` of `hits` (BM25 order, best first) after the three refinements."""
    terms = _terms(query)
    entries = [_entry(page, score, order, terms) for order, (page, score) in enumerate(hits)]
    _collapse_claims(entries)
    kept = [e for e in entries if not e.dropped]
    _mark_superseded(kept)
    # Summaries cover many turns and share words with many questions: they go after the
    # turns that matched, so that they do not crowd them out of the results.
    kept.sort(key=lambda e: (e.superseded_by is not None, e.page.kind in _BROAD, -e.score, e.order))
    return [
        RankedHit(e.page, e.score, e.source, e.superseded_by) for e in kept[:limit]
    ]


def _entry(page: Page, score: float, order: int, terms: frozenset[str]) -> _Entry:
    entry = _Entry(page, score, order)
    if page.kind in _STATING:
        entry.stated = {
            subject: value for subject, value in statements(page.text) if _about(subject, terms)
        }
        if entry.stated:
            entry.score *= 1 + STATEMENT_BOOST
    return entry


def _collapse_claims(entries: list[_Entry]) -> None:
    by_id = {e.page.page_id: e for e in entries}
    for entry in entries:
        if entry.page.kind is not PageKind.CLAIM:
            continue
        for source_id in entry.page.covers:
            source = by_id.get(source_id)
            if source is not None and not source.dropped and source is not entry:
                source.dropped = True
                entry.source = source_id
                entry.score = max(entry.score, source.score)
                entry.order = min(entry.order, source.order)


def _mark_superseded(entries: list[_Entry]) -> None:
    """An entry whose every statement about the question was restated later with another
    value points at the newest restatement."""
    newest: dict[str, _Entry] = {}
    for entry in entries:
        for subject in entry.stated:
            current = newest.get(subject)
            if current is None or entry.page.anchor > current.page.anchor:
                newest[subject] = entry
    for entry in entries:
        if not entry.stated:
            continue
        replaced_by = [
            newest[subject]
            for subject, value in entry.stated.items()
            if newest[subject] is not entry
            and newest[subject].page.anchor > entry.page.anchor
            and newest[subject].stated[subject] != value
        ]
        if len(replaced_by) == len(entry.stated):
            entry.superseded_by = max(replaced_by, key=lambda e: e.page.anchor).page.page_id


def _about(subject: str, terms: frozenset[str]) -> bool:
    """Every word of the subject is in the question: "the greenhouse door code" is not
    about "what is the lab door code?" although most of its words are."""
    words = _terms(subject)
    return bool(words) and words <= terms


def _terms(text: str) -> frozenset[str]:
    """The search terms (the stores' own tokenizer), less the "s" of a possessive."""
    return frozenset(t for t in search_tokens(text) if len(t) > 1)
