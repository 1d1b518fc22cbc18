"""Answering a question from visible passages only, with the rules of `grammar.py`.

Where a fact was stated more than once (a revision), the newest passage wins, as a careful
reader of a chronological transcript would decide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from benchmarks.recall import grammar
from benchmarks.recall.reading import Passage

DONT_KNOW = "I don't know."


@dataclass(frozen=True, slots=True)
class Answer:
    values: tuple[str | None, ...]
    refs: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return bool(self.values) and all(v is not None for v in self.values)

    @property
    def any(self) -> bool:
        return any(v is not None for v in self.values)


def _latest(passages: list[Passage], rule: re.Pattern[str]) -> tuple[str | None, str | None]:
    for passage in reversed(passages):
        matches = list(rule.finditer(passage.text))
        if matches:
            return matches[-1].group("value").strip(), passage.page_id
    return None, None


def find_answer(ask: grammar.Ask | None, passages: list[Passage]) -> Answer:
    """`passages` must be in conversation order (oldest first)."""
    if ask is None:
        return Answer((), ())
    found: list[tuple[str | None, str | None]]
    if ask.kind == "fact":
        found = [_latest(passages, grammar.fact_rule(ask.subject))]
    elif ask.kind == "pair":
        found = [_latest(passages, grammar.pair_rule(ask.subject, slot)) for slot in ask.slots]
    elif ask.kind == "const":
        found = [_latest(passages, grammar.const_rule(ask.subject))]
    elif ask.kind == "func":
        found = [_latest(passages, grammar.func_rule(ask.subject))]
    else:
        found = [(None, None)]
        for passage in reversed(passages):
            value = grammar.find_in_json(passage.text, ask.subject, ask.slots[0])
            if value is not None:
                found = [(value, passage.page_id)]
                break
    return Answer(tuple(v for v, _ in found), tuple(r for _, r in found if r))


def hint_promise(ask: grammar.Ask | None, hint: str) -> int:
    """How likely a search hit holds the answer, judged from its hint the way a careful
    model would: a statement of the asked thing beats a mere mention, a revision beats the
    statement it revises, a tool's result beats the request that asked for it."""
    if ask is None:
        return 0
    text = hint.lower()
    if ask.kind == "fact":
        said = f"{ask.subject.lower()} is "
        return 2 * (said in text) + (f"{said}now " in text)
    if ask.kind == "pair":
        return sum(f"the {slot.lower()}" in text for slot in ask.slots) + (
            ask.subject.lower() in text
        )
    if ask.kind == "tool":
        return 2 * ("result" in text) + (ask.subject.lower() in text)
    return 2 * (ask.subject.lower() in text) + (ask.slots[0].lower() in text)


def _yours(text: str) -> str:
    return re.sub(r"\bmy\b", "your", text, flags=re.IGNORECASE)


def phrase(ask: grammar.Ask | None, answer: Answer) -> str:
    """The reply text; cites the pages the values came from, as strict mode asks."""
    if ask is None or not answer.any:
        return DONT_KNOW
    refs = "".join(f" [ref: {ref}]" for ref in dict.fromkeys(answer.refs))
    shown = [v if v is not None else "(I don't know)" for v in answer.values]
    if ask.kind == "fact":
        text = f"{grammar.capital(_yours(ask.subject))} is {shown[0]}."
    elif ask.kind == "pair":
        first, second = ask.slots
        text = f"For the {ask.subject}: the {first} is {shown[0]} and the {second} is {shown[1]}."
    elif ask.kind == "tool":
        text = f"The {ask.slots[0].replace('_', ' ')} for {ask.subject} was {shown[0]}."
    elif ask.kind == "const":
        text = f"{ask.subject} is set to {shown[0]} in the {ask.slots[0]} code."
    else:
        text = f"That function is {shown[0]}."
    return text + refs
