"""Every kind of fact the dialogue generator tells (`home.py`, `pursuits.py`), and which
kinds each kind of question draws on."""

from __future__ import annotations

from benchmarks.recall.dialogue import home, pursuits
from benchmarks.recall.dialogue.kind import Kind, Line, question_of, text_of

KINDS: dict[str, Kind] = {kind.key: kind for kind in (*home.KINDS, *pursuits.KINDS)}

# The kinds a person has one of, which single, adjacent, temporal and update probes ask about.
SINGLE = ("pet", "instrument", "job", "move", "sport", "vehicle", "sibling", "book", "course",
          "injury", "promotion", "concert")  # fmt: skip
TEMPORAL = tuple(k for k, v in KINDS.items() if v.when)
UPDATABLE = tuple(k for k, v in KINDS.items() if v.revisions)

# Multi-hop questions: (name, question, keywords) over two facts of the same person.
MULTI_HOP = (
    ("sibling_city", "Which city did {O}'s {relation} move to?",
     ("{O} {relation}", "{relation} city move")),
    ("pet_of_player", "What is the name of the {species} that belongs to the person who plays "
     "the {instrument}?", ("plays {instrument}", "{species} name")),
    ("trip_after_promotion", "What was the first city {O} visited after getting promoted?",
     ("{O} promoted", "{O} city visited")),
)  # fmt: skip

__all__ = [
    "KINDS",
    "MULTI_HOP",
    "SINGLE",
    "TEMPORAL",
    "UPDATABLE",
    "Kind",
    "Line",
    "question_of",
    "text_of",
]
