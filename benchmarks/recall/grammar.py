"""The fact language shared by the generator and the scripted model.

The generator states every recallable fact with one of the phrasings below and asks about it
with one of the question templates; the scripted model parses the question back into an
`Ask` and extracts the answer from whatever text it was shown with the matching rule. The
model never sees the generator's probes: it only has the question and the visible text, so
an answer is right exactly when the evidence reached it.

Kinds of ask:
- fact:  "<attr> is <value>." (a revision says "<attr> is now <value>."; the latest wins)
- pair:  two statements "the <event>, the <slot> is <value>" (both needed)
- tool:  a value inside a JSON tool result, found by the key it was looked up with
- const: "<NAME> = <value>" inside a code block
- func:  the `def` whose docstring starts with a purpose
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# A value runs to the sentence's punctuation; values never contain ". " or ", ".
VALUE = r"(?P<value>[^\s].*?)(?=[.,;!?](?:\s|$)| —| \(|\n|$)"

FACT_STATEMENTS = (
    "Quick note so I don't lose it: {attr} is {value}.",
    "By the way, {attr} is {value}, in case I ask later.",
    "{Attr} is {value}. Can you keep that in mind?",
    "Oh, before I forget — {attr} is {value}.",
    "For the record, {attr} is {value}.",
    "Just so you know, {attr} is {value}; I'll probably need it at some point.",
    "Writing this down here: {attr} is {value}. It took me ages to find.",
)
FACT_REVISIONS = (
    "Update: {attr} is now {value}. The old one no longer works.",
    "Small correction, {attr} is now {value}.",
    "Heads up, they changed it: {attr} is now {value}.",
    "Scratch what I said earlier — {attr} is now {value}.",
    "Changed again, sorry: {attr} is now {value}. Please forget the previous one.",
)
FACT_DISTRACTIONS = (
    "I tried to remember {attr} today and blanked for a second.",
    "Funny thing about {attr}: the clerk asked me for it twice this morning.",
    "Not asking about {attr} right now, just thinking out loud about how many of these I keep.",
    "I should really store {attr} in a password manager one day.",
)
FACT_QUESTIONS = (
    "What is {attr}?",
    "Remind me, what is {attr}?",
    "Do you remember what {attr} is?",
    "Quick check: what was {attr} again?",
    "I forgot {attr}. What was it?",
)

PAIR_STATEMENTS = (
    "For the {event}, the {slot} is {value}.",
    "One detail about the {event}: the {slot} is {value}.",
    "The {slot} for the {event} is {value}, by the way.",
    "About the {event} — the {slot} is {value}.",
)
EVENT_CHATTER = (
    "I'm a bit nervous about the {event}, to be honest.",
    "Still need to find something to wear for the {event}.",
    "Everyone at work keeps talking about the {event}.",
    "I volunteered to help set up the {event}. What was I thinking?",
    "My calendar is a mess this month, mostly because of the {event}.",
)
PAIR_QUESTIONS = (
    "What are the {slot_a} and the {slot_b} for the {event}?",
    "For the {event}, what were the {slot_a} and the {slot_b} again?",
    "Can you remind me of the {slot_a} and the {slot_b} of the {event}?",
)

TOOL_QUESTIONS = (
    "What was the {field} in the lookup result for {entity} {key}?",
    "The {entity} {key} lookup you ran earlier: what did it say the {field} was?",
    "Which {field} came back when you looked up {entity} {key}?",
)

CONST_QUESTIONS = (
    "In the {module} code, what is {name} set to?",
    "What value did we give {name} in the {module} code?",
)
FUNC_QUESTIONS = (
    "Which function in the {module} code {purpose}?",
    "What did we name the function that {purpose} in the {module} code?",
)


@dataclass(frozen=True, slots=True)
class Ask:
    """What a question asks for, as the scripted model understands it."""

    kind: str
    subject: str
    slots: tuple[str, ...] = ()


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        f"(?P<{part}>.+?)" if index % 2 else re.escape(part) for index, part in enumerate(parts)
    )
    return re.compile(f"^{pattern}$", re.IGNORECASE)


_QUESTION_FORMS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    [("fact", _template_regex(t)) for t in FACT_QUESTIONS]
    + [("pair", _template_regex(t)) for t in PAIR_QUESTIONS]
    + [("tool", _template_regex(t)) for t in TOOL_QUESTIONS]
    + [("const", _template_regex(t)) for t in CONST_QUESTIONS]
    + [("func", _template_regex(t)) for t in FUNC_QUESTIONS]
)


def parse_question(question: str) -> Ask | None:
    """The ask behind a question written from the templates above; None for anything else.
    More specific kinds are tried first so that "What is X?" does not swallow them."""
    text = question.strip()
    for kind in ("pair", "tool", "const", "func", "fact"):
        for form_kind, regex in _QUESTION_FORMS:
            if form_kind != kind:
                continue
            match = regex.match(text)
            if match is None:
                continue
            groups = match.groupdict()
            if kind == "fact":
                return Ask("fact", groups["attr"])
            if kind == "pair":
                return Ask("pair", groups["event"], (groups["slot_a"], groups["slot_b"]))
            if kind == "tool":
                return Ask("tool", groups["key"], (groups["field"].replace(" ", "_"),))
            if kind == "const":
                return Ask("const", groups["name"], (groups["module"],))
            return Ask("func", groups["purpose"], (groups["module"],))
    return None


def fact_rule(attr: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(attr)} is (?:now )?{VALUE}", re.IGNORECASE)


def pair_rule(event: str, slot: str) -> re.Pattern[str]:
    e, s = re.escape(event), re.escape(slot)
    return re.compile(
        rf"(?:\bthe {e}(?:,| —|:) the {s} is|\bthe {s} for the {e} is) (?:now )?{VALUE}",
        re.IGNORECASE,
    )


def const_rule(name: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(name)}\s*(?::\s*[\w\[\], ]+)?=\s*(?P<value>[^\s#]+)")


def func_rule(purpose: str) -> re.Pattern[str]:
    return re.compile(
        rf"def (?P<value>\w+)\([^)]*\)[^:\n]*:\s*\n\s*\"\"\"{re.escape(purpose)}", re.IGNORECASE
    )


def find_in_json(text: str, key: str, field: str) -> str | None:
    """The value of `field` in a JSON document inside `text` that also holds the string
    `key` somewhere; documents are found by decoding from every `{`."""
    decoder = json.JSONDecoder()
    found: str | None = None
    start = text.find("{")
    while start != -1:
        try:
            doc, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if _holds_value(doc, key):
            value = _field_value(doc, field)
            if value is not None:
                found = value
        start = text.find("{", end)
    return found


def _holds_value(doc: object, key: str) -> bool:
    if isinstance(doc, dict):
        return any(_holds_value(v, key) for v in doc.values())
    if isinstance(doc, list):
        return any(_holds_value(v, key) for v in doc)
    return isinstance(doc, str) and doc == key


def _field_value(doc: object, field: str) -> str | None:
    if isinstance(doc, dict):
        for name, value in doc.items():
            if name == field and not isinstance(value, dict | list):
                return str(value)
            inner = _field_value(value, field)
            if inner is not None:
                return inner
    if isinstance(doc, list):
        for value in doc:
            inner = _field_value(value, field)
            if inner is not None:
                return inner
    return None
