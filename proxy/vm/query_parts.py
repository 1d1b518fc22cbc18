"""The clauses of a question, each searched by meaning beside the whole, pure.

A question that joins two facts ("How many years will I be when my friend Rachel gets
married?": the user's age, said in one session, and Rachel's wedding, in another) is
embedded as one vector, pulled toward the fact with the rarer, more specific words; the
other fact's message can lie far from it ("I'm 32, so I'm in my 30s." ranked 9th by meaning
on the LongMemEval sample, 3rd for "How many years will I be"). Searched by its clauses
too, each fact has a query of its own.
"""

from __future__ import annotations

import re

# Words that open a subordinate clause; a question is cut before each one not at its start.
CLAUSE_WORDS = (
    "when", "while", "where", "before", "after", "since", "because", "until", "whereas",
)  # fmt: skip
# A clause holds at least this many words (shorter ones say too little to search by).
MIN_WORDS = 3
# Clauses of one query, at most: each costs an embedding and a vector search.
MAX_PARTS = 3
# A text longer than this many words is not cut (a long message says many things; its
# clauses would be many queries of little weight each).
MAX_WORDS = 40
_CUT = re.compile(r"\s+(?=(?:" + "|".join(CLAUSE_WORDS) + r")\b)", re.IGNORECASE)


def query_parts(text: str) -> list[str]:
    """The clauses of `text`, each at least MIN_WORDS words, when it has two to MAX_PARTS of
    them; else [] (the whole is its only query)."""
    if len(text.split()) > MAX_WORDS:
        return []
    parts = [p.strip(" ?!.") for p in _CUT.split(text.strip())]
    parts = [p for p in parts if len(p.split()) >= MIN_WORDS]
    return parts if 2 <= len(parts) <= MAX_PARTS else []
