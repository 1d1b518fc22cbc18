"""Segment summaries (`seg_N`): every K user turns one page summing up those turns, and a
roll-up page over every `ROLLUP_FANOUT` summaries of one depth, so the set of top-level
summaries ("the frontier") covers the whole history and stays O(fan-out x log N) in size.

The work is split so the core stays pure: ingest emits a `SegmentJob` naming what a summary
covers; the loop loads those pages (from the batch just ingested or from the store) and calls
`build_summary`; `record_summary` files the new page and returns the roll-up jobs it made due.
"""

from __future__ import annotations

import time
from collections import Counter as TermCounter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.tokens import TokenCounter
from proxy.vm.bm25 import search_tokens
from proxy.vm.compress import make_hint
from proxy.vm.costs import annotate_costs
from proxy.vm.mutations import Clock
from proxy.vm.pages import Modality, Page, PageKind, make_page_id

if TYPE_CHECKING:
    from proxy.vm.ingest import Counters

ROLLUP_FANOUT = 8
KEYWORDS = 6


@dataclass(frozen=True, slots=True)
class SegmentJob:
    """What one summary covers: message positions `lo <= p < hi` (depth 0), or the summary
    pages `covers` (depth >= 1, a roll-up)."""

    seg_id: str
    lo: int
    hi: int
    depth: int = 0
    covers: tuple[str, ...] = ()

    def page_ids(self) -> list[str]:
        """The pages the loop must load for this job."""
        if self.depth:
            return list(self.covers)
        return [make_page_id("msg", p) for p in range(self.lo, self.hi)]


def build_summary(
    job: SegmentJob,
    pages: Sequence[Page],
    *,
    counter: TokenCounter,
    clock: Clock = time.time,
) -> Page:
    """The `seg_N` page for `job`, from the pages it covers (missing ones are skipped)."""
    wanted = set(job.page_ids())
    covered = sorted((p for p in pages if p.page_id in wanted), key=lambda p: p.anchor)
    asked = [p for p in covered if p.role == "user"] or covered
    first_turn = min((p.turn for p in asked), default=0)
    last_turn = max((p.turn for p in asked), default=0)
    span = f"turns {first_turn}-{last_turn}"
    keywords = _keywords(covered)
    topics = ", ".join(keywords) if keywords else "no recurring topic"
    if job.depth == 0:
        lines = [f"{p.page_id} {p.role}: {p.rendering(2)}" for p in covered if p.tokens[2]]
        # Level 1 keeps what was asked; the answers are a fault away.
        key_lines = [
            f"{p.page_id} user: {make_hint(p.rendering(2), max_words=12)}"
            for p in covered
            if p.role == "user"
        ]
        kind = PageKind.SUMMARY
    else:
        lines = [f"{p.page_id} ({p.extra.get('span', '')}): {p.rendering(2)}" for p in covered]
        key_lines = [f"{p.page_id}: {p.hint}" for p in covered]
        kind = PageKind.INDEX
    opening = f" First: {make_hint(asked[0].rendering(2), max_words=14)}" if asked else ""
    level2 = f"Summary of {span}. Topics: {topics}.{opening}"
    hint = f"{span}: {', '.join(keywords[:4]) or 'summary'}"
    renderings = (
        f"Summary of {span}:\n" + "\n".join(lines),
        f"Summary of {span}:\n" + "\n".join(key_lines or lines[:4]),
        level2,
        f"{job.seg_id}: {hint}",
    )
    tokens = [counter.text(r, memo=False) for r in renderings]
    page = Page(
        page_id=job.seg_id,
        kind=kind,
        modality=Modality.TEXT,
        anchor=max((p.anchor for p in covered), default=max(job.hi - 1, 0)),
        turn=last_turn,
        role="summary",
        renderings=renderings,
        tokens=(tokens[0], tokens[1], tokens[2], tokens[3]),
        hint=hint,
        importance=0.7 + 0.05 * job.depth,
        covers=tuple(p.page_id for p in covered),
        created_at=clock(),
        extra={
            "enc": counter.name,
            "depth": job.depth,
            "span": span,
            "lo": min((p.anchor for p in covered), default=job.lo),
        },
    )
    return annotate_costs(page, counter)


def record_summary(
    counters: Counters, page: Page, *, fanout: int = ROLLUP_FANOUT
) -> list[SegmentJob]:
    """File a new summary in the frontier; the roll-up job it completes, if any."""
    depth = int(page.extra.get("depth", 0))
    while len(counters.rollups) <= depth:
        counters.rollups.append([])
    counters.rollups[depth].append(page.page_id)
    if len(counters.rollups[depth]) < fanout:
        return []
    covers = tuple(counters.rollups[depth])
    counters.rollups[depth] = []
    seg_id = make_page_id("seg", counters.segments)
    counters.segments += 1
    return [SegmentJob(seg_id, 0, page.anchor + 1, depth + 1, covers)]


def summary_frontier(counters: Counters) -> list[str]:
    """Top-level summary ids, oldest history first: together they cover every closed
    segment once."""
    return [seg_id for ids in reversed(counters.rollups) for seg_id in ids]


def _keywords(pages: Sequence[Page]) -> list[str]:
    """Terms several pages share, but not words nearly every page has (those say nothing)."""
    terms: TermCounter[str] = TermCounter()
    texts = [p.rendering(2) for p in pages if p.role in ("user", "assistant", "summary")]
    for text in texts:
        # dict.fromkeys, not set: ties keep first-seen order whatever the hash seed.
        unique = dict.fromkeys(search_tokens(text))
        terms.update(t for t in unique if len(t) > 3 and not t.isdigit())
    common = 0.6 * len(texts) if len(texts) >= 4 else len(texts) + 1
    ranked = [t for t, n in terms.most_common() if 2 <= n <= common]
    return ranked[:KEYWORDS]
