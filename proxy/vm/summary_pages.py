"""A summarizing model's answer (proxy.vm.summary_prompt) made into pages, and the daily
token cap it is written within.

- The `seg_N` page keeps its id, level 0 (the stretch's lines) and hint, and takes the
  model's summary as level 2 and its points as level 1. Its search terms (level 0, hint,
  speaker, date: proxy.store.codec.page_search_tokens) are unchanged, so a store replaces
  the page's body without re-indexing it.
- A long message page takes the model's abstract as level 2, the same way.
- Each claim becomes a new `claim_N` page anchored at the message stating it, under an id
  kept for it when the segment was made (`CLAIM_IDS`); a claim the extractive rules
  already made (same words) is left out.
Every page written so carries its provenance in `extra`: `summarizer` (the model) and
`summarises` (the page ids it was written from).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.tokens import TokenCounter
from proxy.vm.claims import claim_key
from proxy.vm.compress import make_hint
from proxy.vm.costs import annotate_costs
from proxy.vm.ingest import CLAIM_HINT_WORDS, Counters
from proxy.vm.pages import Modality, Page, PageKind, make_page_id
from proxy.vm.summary_prompt import ModelSummary


def provenance(model: str, sources: Sequence[str]) -> dict[str, Any]:
    return {"summarizer": model, "summarises": list(sources)}


def is_model_written(page: Page) -> bool:
    return bool(page.extra.get("summarizer"))


def revised_summary(
    page: Page, answer: ModelSummary, model: str, counter: TokenCounter
) -> Page:
    """The `seg_N` page with the model's summary (level 2) and points (level 1)."""
    span = str(page.extra.get("span") or "this stretch")
    points = "\n".join(f"- {p}" for p in answer.points) if answer.points else answer.summary
    level1 = f"Summary of {span}:\n{points}"
    level2 = f"Summary of {span}: {answer.summary}"
    return _revised(page, level1, level2, model, page.covers, counter)


def revised_abstract(page: Page, abstract: str, model: str, counter: TokenCounter) -> Page:
    """A message page with the model's abstract as its level 2."""
    return _revised(page, page.rendering(1), abstract, model, (page.page_id,), counter)


def _revised(
    page: Page, level1: str, level2: str, model: str, sources: Sequence[str],
    counter: TokenCounter,
) -> Page:
    renderings = (page.renderings[0], level1, level2, page.renderings[3])
    tokens = (
        page.tokens[0],
        counter.text(level1, memo=False),
        counter.text(level2, memo=False),
        page.tokens[3],
    )
    extra = {**page.extra, **provenance(model, sources), "extractive": page.renderings[2]}
    revised = dataclasses.replace(page, renderings=renderings, tokens=tokens, extra=extra)
    return annotate_costs(revised, counter)


# In a segment summary's `extra`: the claim ids kept for the model rewriting it, numbered
# when the summary was made, so writing the claims later changes no conversation state.
CLAIM_IDS = "claim_ids"


def reserve_claims(counters: Counters, count: int) -> list[str]:
    """The next `count` claim ids, taken from `counters` (updated in place)."""
    ids = [make_page_id("claim", counters.claims + n) for n in range(count)]
    counters.claims += count
    return ids


def claim_pages(
    answer: ModelSummary,
    sources: Mapping[str, Page],
    claim_ids: Sequence[str],
    known: Collection[str],
    model: str,
    counter: TokenCounter,
    *,
    now: float,
) -> list[Page]:
    """Claim pages for the answer's claims, under the ids kept for them (`claim_ids`, one
    each; claims past them are left out), leaving out claims whose key (claims.claim_key)
    is `known` or repeats one before it, and claims of pages not in `sources`."""
    made: list[Page] = []
    seen = set(known)
    for page_id, sentence in answer.claims:
        key = claim_key(sentence)
        if key in seen or page_id not in sources or len(made) == len(claim_ids):
            continue
        seen.add(key)
        source = sources[page_id]
        claim_id = claim_ids[len(made)]
        hint = make_hint(sentence, max_words=CLAIM_HINT_WORDS)
        renderings = (sentence, sentence, sentence, f"{claim_id}: {hint}")
        tokens = [counter.text(r, memo=False) for r in renderings]
        page = Page(
            page_id=claim_id,
            kind=PageKind.CLAIM,
            modality=Modality.TEXT,
            anchor=source.anchor,
            turn=source.turn,
            role=source.role,
            renderings=renderings,
            tokens=(tokens[0], tokens[1], tokens[2], tokens[3]),
            hint=hint,
            importance=0.9,
            covers=(page_id,),
            created_at=now,
            extra={"enc": counter.name, **provenance(model, (page_id,))},
        )
        made.append(annotate_costs(page, counter))
    return made


# -- the daily cap, per conversation ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SummaryBudget:
    """Tokens (prompt and reply) the summarizer spent on one conversation on `day` (UTC)."""

    day: str
    used: int = 0

    def allows(self, cost: int, cap: int) -> bool:
        """Whether a call that may cost `cost` tokens at most fits under `cap` today."""
        return self.used + cost <= cap

    def spent(self, tokens: int) -> SummaryBudget:
        return SummaryBudget(self.day, self.used + max(tokens, 0))


def utc_day(epoch: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))
