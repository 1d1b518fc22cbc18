"""Filler chit-chat: a user message and an assistant reply on a random topic, composed from
templates and the word lists of `vocab.py`, with numbers and names mixed in so that
sentences rarely repeat even over twenty thousand turns."""

from __future__ import annotations

import random
import re

from benchmarks.recall.vocab import (
    ASSISTANT_CLOSERS,
    ASSISTANT_OPENERS,
    RELATIONS,
    TIMEFRAMES,
    TOPICS,
    UNITS,
    USER_OPENERS,
)

_USER_TEMPLATES = (
    "I've been {doing} for about {n} {unit}, and {trouble}. What am I doing wrong?",
    "My {relation} asked me about {thing}. How would you explain it to a beginner?",
    "Is {thing} really worth it, or is {thing2} enough for someone just starting out?",
    "Thinking about {doing} this {timeframe}. Where should I even start?",
    "So {trouble} again. I tried to {advice} but it didn't change much.",
    "What's the most common mistake people make with {thing}?",
    "Honestly I'm not sure whether to keep {doing}. {Trouble}, and it's getting frustrating.",
    "Any reading you'd recommend on {thing}? I have maybe {n} minutes a day for it.",
    "Someone at work swears that you should always {advice}. Is that actually true?",
    "How long does it usually take before {thing} starts to make a difference?",
    "I keep going back and forth between {thing} and {thing2}. Which would you pick first?",
    "Update on {doing}: it went better this time, though {trouble}.",
    "My {relation} and I are {doing} together now. Any tips for keeping it fun?",
    "Is it normal that {trouble}? I've only been {doing} for {n} {unit}.",
)

_ASSISTANT_SENTENCES = (
    "Usually it helps to {advice}.",
    "When {trouble}, the cause is often that {because}.",
    "I'd {advice}, and then {advice2}.",
    "Try to {advice} for the next {n} {unit} and see whether anything changes.",
    "A lot of people overlook {thing}, but {because}.",
    "Keep in mind that {caveat}.",
    "If you're short on time, just {advice}.",
    "{Thing} matters more than most guides admit, since {because}.",
    "It's also worth reading a little about {thing2}, because {because2}.",
    "In my experience {because}, so patience pays off here.",
    "One small experiment: {advice} on alternate sessions and compare the results.",
    "Your {relation} might enjoy {thing} too, since it is easy to start with.",
)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


_SECOND_PERSON = (
    (r"\bI'm\b", "you're"),
    (r"\bI've\b", "you've"),
    (r"\bI\b", "you"),
    (r"\bmy\b", "your"),
    (r"\bme\b", "you"),
)


def _to_listener(text: str) -> str:
    """The user's own words as the assistant would say them back ("my knees" -> "your knees")."""
    for pattern, replacement in _SECOND_PERSON:
        text = re.sub(pattern, replacement, text)
    return text


def _slots(rng: random.Random, topic: dict[str, tuple[str, ...]]) -> dict[str, str]:
    thing, thing2 = rng.sample(topic["things"], 2)
    advice, advice2 = rng.sample(topic["advice"], 2)
    because, because2 = rng.sample(topic["because"], 2)
    trouble = rng.choice(topic["trouble"])
    return {
        "thing": thing,
        "Thing": _capital(thing),
        "thing2": thing2,
        "doing": rng.choice(topic["doing"]),
        "trouble": trouble,
        "Trouble": _capital(trouble),
        "advice": advice,
        "advice2": advice2,
        "because": because,
        "because2": because2,
        "caveat": rng.choice(topic["caveat"]),
        "relation": rng.choice(RELATIONS),
        "timeframe": rng.choice(TIMEFRAMES),
        "unit": rng.choice(UNITS),
        "n": str(rng.randint(2, 40)),
    }


def _listener_slots(rng: random.Random, topic_name: str) -> dict[str, str]:
    slots = _slots(rng, TOPICS[topic_name])
    slots["trouble"] = _to_listener(slots["trouble"])
    return slots


def filler_user(rng: random.Random, topic_name: str | None = None) -> tuple[str, str]:
    """A user message on a topic; returns (topic name, text)."""
    topic_name = topic_name or rng.choice(sorted(TOPICS))
    slots = _slots(rng, TOPICS[topic_name])
    opener, body = rng.choice(USER_OPENERS), rng.choice(_USER_TEMPLATES).format(**slots)
    if opener.rstrip().endswith((",", ":")) and not body.startswith("I"):
        body = body[:1].lower() + body[1:]
    return topic_name, _capital(opener + body)


def filler_reply(rng: random.Random, topic_name: str) -> str:
    """An assistant reply of two to five sentences on the topic."""
    slots = _listener_slots(rng, topic_name)
    count = rng.randint(2, 5)
    sentences = [rng.choice(ASSISTANT_OPENERS).strip()]
    for template in rng.sample(_ASSISTANT_SENTENCES, count):
        sentences.append(template.format(**slots))
        slots = _listener_slots(rng, topic_name)
    sentences.append(rng.choice(ASSISTANT_CLOSERS))
    return " ".join(s for s in sentences if s)
