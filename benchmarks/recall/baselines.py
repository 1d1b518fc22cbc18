"""What a client could do without the proxy, under the same token budget.

- truncation: the system prompt plus the most recent messages that fit (what chat apps do);
- bm25: the turns that best match the question (Okapi BM25 over individual turns, the
  project's own `BM25Index`), plus the last turns, packed in conversation order; no paging.

Both leave `reply_tokens` of the budget for the reply, as the proxy does with `max_tokens`,
and send the client's tool schemas, which count against the budget too. The prompt goes to
the same scripted model (without VM tools) so that recall is judged the same way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from benchmarks.recall.counting import MODEL, count_message, count_prompt
from benchmarks.recall.generate import Conversation
from proxy.vm.bm25 import BM25Index

PIN_LAST_TURNS = 2
BM25_CANDIDATES = 40


@dataclass
class History:
    """A conversation's messages with their token costs and a BM25 index of its turns,
    computed once and shared by every probe and budget."""

    conversation: Conversation
    costs: list[int] = field(default_factory=list)
    index: BM25Index[int] = field(default_factory=BM25Index)

    def __post_init__(self) -> None:
        self.costs = [count_message(m) for m in self.conversation.messages]
        for number, turn in enumerate(self.conversation.turns):
            texts = (_searchable(m) for m in self.conversation.messages[turn.start : turn.stop])
            self.index.add(number, "\n".join(texts))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.conversation.messages


def _searchable(message: dict[str, Any]) -> str:
    parts = [message.get("content") or ""]
    for call in message.get("tool_calls") or []:
        parts.append(f"{call['function']['name']} {call['function']['arguments']}")
    return "\n".join(parts)


def _body(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], reply_tokens: int
) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages, "tools": tools, "max_tokens": reply_tokens}


def _fit(body: dict[str, Any], budget: int, reply_tokens: int, keep_head: int) -> dict[str, Any]:
    """Drops messages after the first `keep_head` until the exact count fits; token costs
    per message are estimates, the whole-request count is the judge."""
    messages = body["messages"]
    while (
        len(messages) > keep_head + 1
        and count_prompt(messages, body["tools"]) > budget - reply_tokens
    ):
        del messages[keep_head]
        while len(messages) > keep_head + 1 and messages[keep_head].get("role") == "tool":
            del messages[keep_head]
    return body


def truncation_body(
    history: History, question: str, budget: int, reply_tokens: int, end: int | None = None
) -> dict[str, Any]:
    """System prompt + the newest messages of `messages[:end]` that fit + the question."""
    messages = history.messages
    end = len(messages) if end is None else end
    tools = history.conversation.tools
    asked = {"role": "user", "content": question}
    room = budget - reply_tokens - count_prompt([messages[0], asked], tools)
    start = end
    while start > 1 and history.costs[start - 1] <= room:
        room -= history.costs[start - 1]
        start -= 1
    while start < end and messages[start].get("role") == "tool":
        start += 1  # a tool result without its call is not a valid prompt
    body = _body([messages[0], *messages[start:end], asked], tools, reply_tokens)
    return _fit(body, budget, reply_tokens, keep_head=1)


def bm25_body(
    history: History, question: str, budget: int, reply_tokens: int, end_turn: int | None = None
) -> dict[str, Any]:
    """System prompt + the best-matching turns of the first `end_turn` turns + the last
    turns before it, in conversation order, + the question."""
    conversation, messages = history.conversation, history.messages
    end_turn = len(conversation.turns) if end_turn is None else end_turn
    tools = conversation.tools
    asked = {"role": "user", "content": question}
    room = budget - reply_tokens - count_prompt([messages[0], asked], tools)
    recent = list(range(max(0, end_turn - PIN_LAST_TURNS), end_turn))
    hits = [
        t for t, _ in history.index.search(question, BM25_CANDIDATES, filter=lambda t: t < end_turn)
    ]
    chosen: set[int] = set()
    for number in itertools.chain(reversed(recent), hits):
        if number in chosen:
            continue
        turn = conversation.turns[number]
        cost = sum(history.costs[turn.start : turn.stop])
        if cost <= room:
            chosen.add(number)
            room -= cost
    packed = [
        m
        for number in sorted(chosen)
        for m in messages[conversation.turns[number].start : conversation.turns[number].stop]
    ]
    body = _body([messages[0], *packed, asked], tools, reply_tokens)
    return _fit(body, budget, reply_tokens, keep_head=1)


BASELINES = {"truncation": truncation_body, "bm25": bm25_body}
