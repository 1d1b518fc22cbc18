"""Claims: the decision- and fact-like sentences of a conversation, kept as their own pages.

A claim is a sentence a later turn is likely to need verbatim: a decision ("we decided to use
PostgreSQL"), a stated fact about the user or the work ("my budget is 4,000 EUR", "I live in
Lisbon"), a request to remember, a constraint ("never deploy on Fridays"), or a sentence that
pins a number or date to a name. Extraction is rule-based and deterministic; at most
`MAX_PER_MESSAGE` claims come from one message. Assistant text only yields decisions, so the
model's own guesses do not become facts.
"""

from __future__ import annotations

import re

MAX_PER_MESSAGE = 3
MIN_WORDS = 4
MAX_WORDS = 60

_DECISION = re.compile(
    r"\b(we|i)\s*(?:'ve|have|'ll|will)?\s*(decided|agreed|chose|chosen|settled on|"
    r"go(?:ing)? with|stick with|picked)\b|\blet'?s (go with|use|stick with|keep)\b|"
    r"\b(the )?decision (is|was)\b|\bfinal answer\b",
    re.I,
)
_PERSONAL = re.compile(
    r"\bmy\s+(?:\w+\s+){0,4}?(is|are|was|were)\b|"
    r"\bi\s*(?:am|'m|live|work|prefer|like|love|hate|use|need|want|own|have)\b|"
    r"\b(our|the)\s+(\w+\s+){0,2}(deadline|budget|goal|limit|requirement|address|name)\s+(is|are|was)\b",
    re.I,
)
_REMEMBER = re.compile(
    r"\b(remember|don'?t forget|do not forget|note that|keep in mind|for the record)\b", re.I
)
_CONSTRAINT = re.compile(r"\b(always|never|must not|must|mustn'?t|do not ever)\b", re.I)
_NUMBER = re.compile(r"\d")
_NAME = re.compile(r"\b[A-Z][a-z]{2,}")
_COPULA = re.compile(r"\b(is|are|was|were|has|have|had|costs?|equals?|=)\b", re.I)
# Capitalised only because they open a sentence; not names.
_STARTERS = frozenset(
    "The This That These Those There Here It Its We Our You Your They Their And But So "
    "Then What When Where Which Who How Yes Not".split()
)
_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_SPACE = re.compile(r"\s+")
_FENCE = re.compile(r"```.*?```", re.S)


def extract_claims(text: str, role: str) -> list[str]:
    """Claim sentences of one message, in order, at most `MAX_PER_MESSAGE`."""
    if role not in ("user", "assistant") or not text:
        return []
    found: list[tuple[int, int, str]] = []
    for index, raw in enumerate(_SPLIT.split(_FENCE.sub(" ", text))):
        sentence = _SPACE.sub(" ", raw).strip()
        words = len(sentence.split())
        if words < MIN_WORDS or words > MAX_WORDS or sentence.endswith("?"):
            continue
        strength = claim_strength(sentence, role)
        if strength:
            found.append((strength, index, sentence))
    best = sorted(found, key=lambda item: (-item[0], item[1]))[:MAX_PER_MESSAGE]
    return [sentence for _, _, sentence in sorted(best, key=lambda item: item[1])]


def claim_strength(sentence: str, role: str) -> int:
    """0 when the sentence is no claim; higher for clearer ones."""
    if _DECISION.search(sentence):
        return 3
    if role != "user":
        return 0
    if _REMEMBER.search(sentence):
        return 3
    if _PERSONAL.search(sentence):
        return 2
    if _CONSTRAINT.search(sentence):
        return 1
    names = [n for n in _NAME.findall(sentence) if n not in _STARTERS]
    if _NUMBER.search(sentence) and names and _COPULA.search(sentence):
        return 1
    return 0
