"""Judging probes and adding results up per system, conversation length and budget.

- recall: every evidence snippet of the probe was in the text the model could answer from,
  in the request it answered (whitespace around `:` and `,` ignored, so a re-serialised
  JSON tool result still counts);
- accuracy: the answer holds every expected value;
- faults and round trips per question, prompt tokens sent per question against what the
  full history would have cost;
- prefix share: per upstream prompt, the longest common prefix with the previous prompt of
  the same conversation over its length (chars of the serialised tools + messages), averaged
  over the history turns: what an upstream prompt cache could reuse.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from statistics import mean
from typing import Any

from benchmarks.recall.generate import Probe
from benchmarks.recall.scripted_model import Exchange

_AROUND_PUNCT = re.compile(r"\s*([:,])\s*")
_SPACES = re.compile(r"\s+")


def _normal(text: str) -> str:
    return _SPACES.sub(" ", _AROUND_PUNCT.sub(r"\1", text))


def evidence_visible(probe: Probe, visible: str) -> bool:
    shown = _normal(visible)
    return all(_normal(e.snippet) in shown for e in probe.evidence)


def answered_correctly(probe: Probe, answer: str) -> bool:
    said = answer.lower()
    return all(value.lower() in said for value in probe.answers)


@dataclass
class ProbeRecord:
    system: str
    size: int
    budget: int
    kind: str
    question: str
    expected: tuple[str, ...]
    answer: str
    visible: bool
    correct: bool
    faults: int
    round_trips: int
    tokens_sent: int
    full_tokens: int
    max_prompt_tokens: int
    notes: str = ""
    # the proxy rebuilt at least one of the upstream requests (VM active, not pass-through)
    paged: bool = False


def judge(
    system: str,
    size: int,
    budget: int,
    probe: Probe,
    exchanges: list[Exchange],
    full_tokens: int,
    answer: str | None = None,
    notes: str = "",
) -> ProbeRecord:
    """A probe's record from the upstream exchanges it caused (the last one answered)."""
    final = exchanges[-1]
    said = final.answer if answer is None else answer
    return ProbeRecord(
        system=system,
        size=size,
        budget=budget,
        kind=probe.kind,
        question=probe.question,
        expected=probe.answers,
        answer=said,
        visible=evidence_visible(probe, final.visible),
        correct=answered_correctly(probe, said),
        faults=sum(1 for e in exchanges if e.action == "fault"),
        round_trips=len(exchanges),
        tokens_sent=sum(e.prompt_tokens for e in exchanges),
        full_tokens=full_tokens,
        max_prompt_tokens=max(e.prompt_tokens for e in exchanges),
        notes=notes,
        paged=any(e.vm_active for e in exchanges),
    )


@dataclass
class FeedStats:
    """The history turns of one run: prompt-cache friendliness and tokens sent."""

    system: str
    size: int
    budget: int
    turns: int
    prefix_share: float
    tokens_sent: int
    full_tokens: int
    seconds: float = 0.0
    notes: str = ""
    # share of consecutive prompts whose first difference falls in each part of the prompt
    divergence: dict[str, float] = field(default_factory=dict)


@dataclass
class Row:
    system: str
    size: int
    budget: int
    probes: int
    recall: float
    accuracy: float
    faults_per_question: float
    max_faults: int
    round_trips_per_question: float
    tokens_per_question: float
    full_tokens_per_question: float
    token_savings: float
    prefix_share: float | None
    feed_token_savings: float | None
    recall_by_kind: dict[str, float] = field(default_factory=dict)
    notes: str = ""
    unpaged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(records: list[ProbeRecord], feeds: list[FeedStats]) -> list[Row]:
    groups: dict[tuple[str, int, int], list[ProbeRecord]] = defaultdict(list)
    for record in records:
        groups[(record.system, record.size, record.budget)].append(record)
    feed_of = {(f.system, f.size, f.budget): f for f in feeds}
    rows = []
    for key in sorted(groups, key=lambda k: (k[1], k[2], k[0])):
        group = groups[key]
        by_kind: dict[str, list[bool]] = defaultdict(list)
        for record in group:
            by_kind[record.kind].append(record.visible)
        sent = mean(r.tokens_sent for r in group)
        full = mean(r.full_tokens for r in group)
        feed = feed_of.get(key)
        rows.append(
            Row(
                system=key[0],
                size=key[1],
                budget=key[2],
                probes=len(group),
                recall=mean(r.visible for r in group),
                accuracy=mean(r.correct for r in group),
                faults_per_question=mean(r.faults for r in group),
                max_faults=max(r.faults for r in group),
                round_trips_per_question=mean(r.round_trips for r in group),
                tokens_per_question=sent,
                full_tokens_per_question=full,
                token_savings=1 - sent / full if full else 0.0,
                prefix_share=feed.prefix_share if feed else None,
                feed_token_savings=(1 - feed.tokens_sent / feed.full_tokens)
                if feed and feed.full_tokens
                else None,
                recall_by_kind={k: mean(v) for k, v in sorted(by_kind.items())},
                unpaged=sum(not r.paged for r in group) if key[0] == "proxy" else 0,
                notes="; ".join(
                    sorted(
                        {r.notes for r in group if r.notes}
                        | ({feed.notes} if feed and feed.notes else set())
                    )
                ),
            )
        )
    return rows


def divergence_shares(exchanges: list[Exchange]) -> dict[str, float]:
    sections = Counter(e.diverged_in for e in exchanges if e.diverged_in)
    total = sum(sections.values())
    return {name: count / total for name, count in sections.most_common()}


def mean_prefix_share(exchanges: list[Exchange]) -> float:
    """Average prefix share of the exchanges after the first (which has no predecessor)."""
    shares = [e.prefix_share for e in exchanges[1:]]
    return mean(shares) if shares else 0.0
