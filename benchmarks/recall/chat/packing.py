"""The baselines: what a client could send without the proxy, filling the same budget.

- truncation: the system prompt, then the newest messages that fit, then the question;
- bm25: Okapi BM25 over single messages (the project's `BM25Index`, message text only),
  ranked for the question and packed best first: each hit that fits goes in, one that does
  not is skipped and smaller ones after it are still tried, so the budget ends up full;
  the packed messages are sent in conversation order;
- bm25_next: the same, each hit bringing the message after it (a question's answer).

Every prompt leaves `reply_tokens` of the budget for the reply, as the proxy does with
`max_tokens`; message costs add up exactly to the request's count (`proxy.tokens`).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import accumulate
from typing import Any

from benchmarks.recall.counting import MODEL, count_message, count_prompt
from proxy.vm.bm25 import BM25Index


class Corpus:
    """A conversation's messages with their token costs and a BM25 index of them, made
    once and shared by every question and budget."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.costs = [count_message(m) for m in messages]
        # full[p]: a prompt of messages[:p] (the reply primer, then each message's cost)
        self.full = list(accumulate(self.costs, initial=3))
        self.index: BM25Index[int] = BM25Index()
        for position, message in enumerate(messages):
            if position and isinstance(message.get("content"), str):
                self.index.add(position, message["content"])

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return count_prompt(body["messages"])

    def full_tokens(self, question: str) -> int:
        """The whole history plus the question as one prompt."""
        return self.full[-1] + count_message(asked(question))

    def room(self, question: str, budget: int, reply_tokens: int) -> int:
        """Tokens left for history once the system prompt and the question are in."""
        fixed = count_prompt([self.messages[0], asked(question)])
        return budget - reply_tokens - fixed


def asked(question: str) -> dict[str, Any]:
    return {"role": "user", "content": question}


def _body(corpus: Corpus, positions: list[int], question: str, reply_tokens: int) -> dict[str, Any]:
    messages = [corpus.messages[0], *(corpus.messages[p] for p in sorted(positions))]
    return {"model": MODEL, "messages": [*messages, asked(question)], "max_tokens": reply_tokens}


def truncation(
    corpus: Corpus, question: str, budget: int, reply_tokens: int, end: int | None = None
) -> dict:
    """`end`: the history is `messages[1:end]` (default: all of it)."""
    end = len(corpus.messages) if end is None else end
    room = corpus.room(question, budget, reply_tokens)
    start = end
    while start > 1 and corpus.costs[start - 1] <= room:
        room -= corpus.costs[start - 1]
        start -= 1
    return _body(corpus, list(range(start, end)), question, reply_tokens)


def _packed(corpus: Corpus, question: str, budget: int, reply_tokens: int, span: int,
            end: int | None) -> dict:  # fmt: skip
    end = len(corpus.messages) if end is None else end
    room = corpus.room(question, budget, reply_tokens)
    chosen: set[int] = set()
    hits = corpus.index.search(question, len(corpus.index), filter=lambda p: p < end)
    for position, _ in hits:
        unit = [p for p in range(position, min(position + span, end)) if p not in chosen]
        cost = sum(corpus.costs[p] for p in unit)
        if unit and cost <= room:
            chosen.update(unit)
            room -= cost
    return _body(corpus, list(chosen), question, reply_tokens)


def bm25(
    corpus: Corpus, question: str, budget: int, reply_tokens: int, end: int | None = None
) -> dict:
    return _packed(corpus, question, budget, reply_tokens, 1, end)


def bm25_next(
    corpus: Corpus, question: str, budget: int, reply_tokens: int, end: int | None = None
) -> dict:
    return _packed(corpus, question, budget, reply_tokens, 2, end)


Baseline = Callable[..., dict]
BASELINES: dict[str, Baseline] = {
    "truncation": truncation,
    "bm25": bm25,
    "bm25_next": bm25_next,
}
