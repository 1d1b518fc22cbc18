"""Segment summaries (`seg_N`): every K user turns one page summing up those turns, and a
roll-up page over every `ROLLUP_FANOUT` summaries of one depth, so the set of top-level
summaries ("the frontier") covers the whole history and stays O(fan-out x log N) in size.

The work is split so the core stays pure: ingest emits a `SegmentJob` naming what a summary
covers; the loop loads those pages (from the batch just ingested or from the store) and calls
`build_summary`; `record_summary` files the new page and returns the roll-up jobs it made due.
"""

from __future__ import annotations

import re
import time
from collections import Counter as TermCounter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.tokens import TokenCounter
from proxy.vm.attribution import without_dates
from proxy.vm.bm25 import STOP_WORDS
from proxy.vm.bounds import analysed
from proxy.vm.claims import claim_strength, extract_claims
from proxy.vm.compress import make_hint
from proxy.vm.context import who
from proxy.vm.costs import annotate_costs
from proxy.vm.mutations import Clock
from proxy.vm.pages import Modality, Page, PageKind, make_page_id

if TYPE_CHECKING:
    from proxy.vm.ingest import Counters

ROLLUP_FANOUT = 8
KEYWORDS = 8
CLAIM_WORDS = 18
# claims.claim_strength of a decision or a request to remember.
DECISION = 3
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_NUMBER = re.compile(r"[$€£]?\d[\d,.:/]*%?")
_EDGE = "\"'()[]{}.,;:!?*_"
_BREAK = (",", ".", ";", ":", "!", "?")
# Capitalised at a sentence's start or as a greeting, not names.
_NOT_NAMES = frozenset(
    "i i'm i've i'll i'd ok okay hi hey hello thanks yes no oh session date morning evening "
    "dear the this that these those there here it its we our you your they their and but so "
    "then what when where which who how not".split()
)


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
    dates = list(dict.fromkeys(str(p.extra["said"]) for p in covered if p.extra.get("said")))
    if dates:
        span += f", {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1 else "")
    keywords = salient(covered)
    topics = ", ".join(keywords) if keywords else "nothing named"
    if job.depth == 0:
        lines = [f"{p.page_id} {who(p)}: {p.rendering(2)}" for p in covered if p.tokens[2]]
        # Level 1 keeps what was asked; the answers are a fault away.
        key_lines = [
            f"{p.page_id} {who(p)}: {make_hint(p.rendering(2), max_words=12)}"
            for p in covered
            if p.role == "user"
        ]
        kind = PageKind.SUMMARY
    else:
        lines = [f"{p.page_id} ({p.extra.get('span', '')}): {p.rendering(2)}" for p in covered]
        key_lines = [f"{p.page_id}: {p.hint}" for p in covered]
        kind = PageKind.INDEX
    decided = _decided(covered) if job.depth == 0 else ""
    level2 = f"Summary of {span}. Mentions: {topics}." + (f" {decided}" if decided else "")
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


def salient(pages: Sequence[Page]) -> list[str]:
    """What a stretch of conversation names: the names and titles in it (capitalised words
    and runs of them, not a sentence's first word, not its speakers), the numbers with
    what they count, and the dates; then, for a roll-up, what its parts named. Frequent
    words are what every stretch has, and tell a reader nothing about this one."""
    speakers = {str(p.extra.get("speaker") or "").lower() for p in pages}
    found: TermCounter[str] = TermCounter()
    order: dict[str, int] = {}
    for page in pages:
        if page.kind in (PageKind.SUMMARY, PageKind.INDEX):
            named = str(page.rendering(2)).partition("Mentions: ")[2].partition(".")[0]
            items = [item.strip() for item in named.split(",") if item.strip()]
        elif page.role in ("user", "assistant"):
            items = _named(without_dates(analysed(page.text)))
        else:
            continue
        for item in dict.fromkeys(_trimmed(i) for i in items):
            if not item or item.lower() in speakers:
                continue
            found[item] += 1
            order.setdefault(item, len(order))
    ranked = sorted(found, key=lambda item: (-found[item], order[item]))
    return ranked[:KEYWORDS]


def _trimmed(item: str) -> str:
    """A run of capitalised words without the greeting or sentence opener it starts with."""
    words = item.split()
    while words and words[0].lower() in _NOT_NAMES:
        words.pop(0)
    return " ".join(words)


def _named(text: str) -> list[str]:
    items: list[str] = []
    for sentence in _SENTENCE.split(text):
        words = sentence.split()
        run: list[str] = []
        for index, word in enumerate(words):
            bare = word.strip(_EDGE)
            if index and bare[:1].isupper() and bare[1:2].islower() and len(bare) > 1:
                run.append(bare)
                if bare != word.rstrip(_EDGE):
                    continue
                if word.endswith(_BREAK):
                    items.append(" ".join(run))
                    run = []
                continue
            if run:
                items.append(" ".join(run))
                run = []
            if _NUMBER.fullmatch(bare):
                following = words[index + 1].strip(_EDGE) if index + 1 < len(words) else ""
                wordy = following[:1].isalpha() and following.lower() not in STOP_WORDS
                unit = following if wordy and len(following) <= 12 else ""
                items.append(f"{bare} {unit}".strip())
        if run:
            items.append(" ".join(run))
    return items


def _decided(pages: Sequence[Page]) -> str:
    """The first decision of the stretch, or thing asked to be remembered (the strongest
    kind of claim), to keep it in view."""
    for page in pages:
        for sentence in extract_claims(analysed(page.text), page.role):
            if claim_strength(sentence, page.role) >= DECISION:
                return make_hint(sentence, max_words=CLAIM_WORDS)
    return ""
