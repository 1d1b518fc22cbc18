"""The passages a message is embedded as, pure.

A message of chit-chat states its one fact in one sentence among others ("A little, I won't
lie. I've started to play the accordion. This week flew by."), and a sentence embedding of
the whole is pulled toward what the rest says. Embedded as passages of a sentence or two,
the fact's passage lies near a question about it, and the message scores its best passage
(on the dialogue set, the median rank of an evidence message by meaning went from 44 to 13).
"""

from __future__ import annotations

import re

# A passage holds at least this many words (shorter sentences join the next one).
MIN_WORDS = 6
# Passages of one message, at most (a long one is cut into this many runs of sentences).
MAX_PASSAGES = 8
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def passages(text: str) -> list[str]:
    """`text` as consecutive passages of whole sentences, each at least MIN_WORDS words
    (the last joins the one before when shorter), at most MAX_PASSAGES; [] for no text."""
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    found: list[str] = []
    current: list[str] = []
    words = 0
    for sentence in sentences:
        current.append(sentence)
        words += len(sentence.split())
        if words >= MIN_WORDS:
            found.append(" ".join(current))
            current, words = [], 0
    if current:
        if found:
            found[-1] = f"{found[-1]} {' '.join(current)}"
        else:
            found.append(" ".join(current))
    if len(found) > MAX_PASSAGES:
        size = -(-len(found) // MAX_PASSAGES)
        found = [" ".join(found[i : i + size]) for i in range(0, len(found), size)]
    return found


def passage_id(page_id: str, number: int) -> str:
    """The vector row id of a page's `number`-th passage (the first is the page id)."""
    return page_id if number == 0 else f"{page_id}#{number}"


def page_of(row_id: str) -> str:
    return row_id.partition("#")[0]
