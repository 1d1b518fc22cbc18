"""What every chat dataset hands the harness: a conversation as OpenAI messages and the
questions asked at its end, each with the evidence that must be visible to the model when
it answers.

An `Evidence` is recalled when any one of its texts appears in what the model was shown
(whitespace normalised, and around `:` and `,` ignored, so a re-serialised JSON tool result
still counts); a question is recalled when all its evidence is. A temporal question's
session `date` is judged apart, so recall is reported with and without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_AROUND_PUNCT = re.compile(r"\s*([:,])\s*")
_SPACES = re.compile(r"\s+")


def normal(text: str) -> str:
    return _SPACES.sub(" ", _AROUND_PUNCT.sub(r"\1", text)).strip()


@dataclass(frozen=True, slots=True)
class Evidence:
    """Text that must be visible; `position` is the message holding it (-1: any message)."""

    position: int
    texts: tuple[str, ...]

    def seen_in(self, shown: str) -> bool:
        """`shown` must already be `normal()`ised."""
        return any(normal(text) in shown for text in self.texts)


@dataclass(frozen=True, slots=True)
class Question:
    kind: str
    question: str
    answer: str
    # search queries a model would derive from the question alone (no evidence words)
    keywords: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    date: Evidence | None = None
    stale: tuple[Evidence, ...] = ()  # superseded statements: shown or not, never required


@dataclass
class Chat:
    dataset: str
    name: str
    messages: list[dict[str, Any]]
    questions: list[Question]
    # questions of the source left out, each with the reason
    excluded: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Verdict:
    recalled: bool  # all evidence visible (a temporal question's date not required)
    with_date: bool  # ... and, for a temporal question, its session date too


def judge(question: Question, visible: str) -> Verdict:
    shown = normal(visible)
    recalled = all(e.seen_in(shown) for e in question.evidence)
    dated = recalled and (question.date is None or question.date.seen_in(shown))
    return Verdict(recalled, dated)
