"""What two friends tell each other, as templates: for each kind of fact, how its owner
states it (`states`), how the friend asks for it and the owner answers in a word or two
(`asks`, `replies`), how a later question about it is worded (`questions`, each with the
search keywords a model would take from that question), how it is stated with a relative
time for "when" questions, how it is revised, and talk that shares its words without
holding it (`mentions` by the owner, `distractors` by either friend).

A statement, ask or revision may carry its own question, `(text, question, keywords)`:
one that only makes sense when the fact was told that way ("Why was Maya limping?" needs
the friend to have said she was limping). The kind's `questions` fit any telling.

Slots: `{O}` the owner's name, `{X}` the name of whoever is spoken to, fact values
(`{pet}`, `{city}`, ...), `{ago}` a relative time; a capitalised slot name (`{Ago}`,
`{Sport}`) is the value with its first letter upper case. `«...»` marks the snippet that
must be visible for the fact to count as recalled; it always contains the answer.

Statements vary in whether they use the question's words ("dog", "instrument", "work")
or a paraphrase ("the little guy", "practising", "first week at"), as people do.
"""

from __future__ import annotations

from dataclasses import dataclass

# A template, or a template with the question (and keywords) it alone can answer.
Line = str | tuple[str, str, str]


def text_of(line: Line) -> str:
    return line if isinstance(line, str) else line[0]


def question_of(line: Line) -> tuple[str, str] | None:
    return None if isinstance(line, str) else (line[1], line[2])


@dataclass(frozen=True, slots=True)
class Kind:
    key: str
    answer: str  # the slot holding the answer
    questions: tuple[tuple[str, str], ...] = ()  # (question, keywords)
    states: tuple[Line, ...] = ()
    asks: tuple[Line, ...] = ()
    replies: tuple[str, ...] = ()
    reacts: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    # the friend asking after the fact later on, without its value
    checkins: tuple[str, ...] = ()
    distractors: tuple[str, ...] = ()
    when: tuple[tuple[str, str], ...] = ()  # temporal (question, keywords)
    when_states: tuple[str, ...] = ()
    update: tuple[tuple[str, str], ...] = ()  # (question, keywords) about the newest value
    revisions: tuple[Line, ...] = ()  # the owner states `{new}`
