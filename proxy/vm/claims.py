"""Claims: the decision- and fact-like sentences of a conversation, kept as their own pages.

A claim is a sentence a later turn is likely to need verbatim: a decision ("we decided to use
PostgreSQL"), a stated fact about the user or the work ("my budget is 4,000 EUR", "I live in
Lisbon"), a request to remember, a constraint ("never deploy on Fridays"), or a sentence that
pins a number or date to a name. Extraction is rule-based and deterministic; at most
`MAX_PER_MESSAGE` claims come from one message. Assistant text only yields decisions, so the
model's own guesses do not become facts.
"""

from __future__ import annotations

import hashlib
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
# Asking to remember, not reporting that one tried to ("I tried to remember ..." is no fact).
_REMEMBER = re.compile(
    r"(?:^|[,:;—–-]\s*)(?:please\s+)?(?:remember|note)\b(?!\s+(?:when|how|if|whether))|"
    r"\b(don'?t forget|do not forget|note that|keep in mind|for the record|before i forget|"
    r"writing (?:this|it) down|make a note)\b",
    re.I,
)
# A rule is said as one: "Never deploy on Fridays", "we must keep ..."; "the milk never
# foams" is a complaint, not a constraint.
_CONSTRAINT = re.compile(
    r"^(?:please\s+)?(?:always|never|do not ever|don'?t ever)\b|"
    r"\b(?:must not|must|mustn'?t)\b",
    re.I,
)
# Sentences that talk about a thing without stating it: doubts, forgetting, hearsay.
_NOT_STATED = re.compile(
    r"\b(tried to remember|can'?t remember|cannot remember|don'?t remember|forgot|not sure|"
    r"wonder(?:ing)?|not asking|thinking out loud|swears|should really|no idea|"
    r"don'?t know|do not know)\b",
    re.I,
)
# "<subject> is <value>": the subject a possessive or determined noun phrase, the value
# carrying a number or a name; "now"/"still" mark a restatement.
_STATEMENT = re.compile(
    r"\b(?P<subject>(?:[Mm]y|[Oo]ur|[Tt]he|[Yy]our|[A-Z][\w-]*'s)(?:\s+[\w'-]+){1,4}?)\s+"
    r"(?:is|are|was|were)\s+(?:now\s+|still\s+|actually\s+)?(?P<value>[^.;!?]+)",
)
_VALUE = re.compile(r"\d|\b[A-Z][\w-]+")
_DETERMINERS = frozenset("my our the your".split())
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
_WORDS = re.compile(r"\w+")


def extract_claims(text: str, role: str) -> list[str]:
    """Claim sentences of one message, in order, at most `MAX_PER_MESSAGE`."""
    if role not in ("user", "assistant") or not text:
        return []
    found: list[tuple[int, int, str]] = []
    for index, sentence in enumerate(_statements_of(text)):
        words = len(sentence.split())
        if words < MIN_WORDS or words > MAX_WORDS:
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
    if role != "user" or _NOT_STATED.search(sentence):
        return 0
    if _REMEMBER.search(sentence):
        return 3
    if _PERSONAL.search(sentence) or _stated(sentence) is not None:
        return 2
    if _CONSTRAINT.search(sentence):
        return 1
    names = [n for n in _NAME.findall(sentence) if n not in _STARTERS]
    if _NUMBER.search(sentence) and names and _COPULA.search(sentence):
        return 1
    return 0


def statement(sentence: str) -> tuple[str, str] | None:
    """(subject key, value) when the sentence states what something is: "Dmitri's desk
    extension is now 6243" -> ("dmitri's desk extension", "6243"). The key drops the
    determiner, so "my dentist" and "the dentist" are one subject; None for sentences
    that state no value (a number or a name) or only talk about the thing."""
    return None if _NOT_STATED.search(sentence) else _stated(sentence)


def _stated(sentence: str) -> tuple[str, str] | None:
    """`statement` for a sentence already known not to be a doubt or hearsay."""
    match = _STATEMENT.search(sentence)
    if match is None:
        return None
    value = match.group("value").split(", ")[0].strip()
    if not _VALUE.search(value):
        return None
    words = match.group("subject").lower().split()
    if words[0] in _DETERMINERS:
        words = words[1:]
    return " ".join(words), " ".join(value.split()[:8])


def statements(text: str) -> list[tuple[str, str]]:
    """Every (subject key, value) stated in a text, in order (code blocks skipped)."""
    return [stated for s in _statements_of(text) if (stated := statement(s)) is not None]


def _statements_of(text: str) -> list[str]:
    """The text's sentences outside code blocks, spaces normalised, questions left out."""
    sentences = (_SPACE.sub(" ", raw).strip() for raw in _SPLIT.split(_FENCE.sub(" ", text)))
    return [s for s in sentences if s and not s.endswith("?")]


def claim_key(sentence: str) -> str:
    """A short digest of a claim's words, the same for the same statement however it is
    cased or punctuated (a repeated statement is one claim)."""
    normal = " ".join(_WORDS.findall(sentence.lower()))
    return hashlib.blake2b(normal.encode(), digest_size=4).hexdigest()
