"""Seeded, deterministic long chats between two friends, with questions about them.

    chats = generate_dialogues(seed=7)      # 6 conversations, 22 questions each

Speaker A is `role: user`, speaker B `role: assistant`, each message carrying OpenAI's
`name`; a short neutral system message comes first. About 24 dated sessions of small talk
(each session's first message says its date once), in which each friend's life comes up:
pets, jobs, moves, hobbies, trips, family. Facts are told the ways people tell them (a
statement and a reaction, or a question answered in a word or two), worded unlike the
later question as often as not, mentioned again without being restated, revised, and
surrounded by talk that shares their words. Questions (`Question.kind`):

- single: a fact stated by its owner; adjacent: a fact given as the reply to the friend's
  question (the question's words match the asking turn, the evidence is the reply);
- temporal: "When did ...", the evidence says "last weekend" and the date is only in the
  session's first message (`Question.date`);
- update: a fact revised in a later session, the newest required (the old is `stale`);
- multi_hop: two facts from different sessions joined by the question.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from benchmarks.recall.chat.types import Chat, Evidence, Question
from benchmarks.recall.dialogue import lexicon, talk
from benchmarks.recall.dialogue.facts import (
    KINDS,
    MULTI_HOP,
    SINGLE,
    TEMPORAL,
    UPDATABLE,
    Line,
    question_of,
    text_of,
)
from benchmarks.recall.dialogue.plan import Event, Plan

# Share of lines that get a passing remark added, as friends' messages ramble a little.
REMARK_SHARE = 0.6
PROBE_MIX = (("multi_hop", 3), ("update", 2), ("temporal", 4), ("adjacent", 4), ("single", 9))
# Share of questions worded with a word of the turn they were written from (the statement,
# or for an adjacent fact the friend's asking turn), when the kind has such a wording: how
# often people who write questions about a chat reuse its words. The rest are paraphrased.
ECHO = 0.9
_WORD = re.compile(r"[a-z0-9]+")
_FUNCTION_WORDS = frozenset(
    "a an and are did do does for has have how is of s the to was what when where which who".split()
)
_MARK = re.compile(r"«([^»]*)»")
FOLLOW_UPS = (
    "Haha, I know!",
    "Honestly, yes.",
    "It's been a good week for once.",
    "Anyway, that's my news.",
    "Still getting used to it.",
)
ASIDES = (
    "Ha, classic.",
    "Oh no, really?",
    "Honestly, same.",
    "That's so funny.",
    "Hmm, maybe one day!",
    "Ha, I can picture it.",
)
# relative time -> (days before the session date, how the answer is put)
AGO = (
    ("yesterday", 1, "{d1}"),
    ("last weekend", 0, "the weekend before {d0}"),
    ("last week", 7, "the week before {d0}"),
    ("two weeks ago", 14, "about {d14}"),
    ("a few days ago", 3, "a few days before {d0}"),
    ("last month", 30, "{m30}"),
    ("on Saturday", 0, "{sat}"),
)


@dataclass
class _Built:
    messages: list[dict[str, Any]] = field(default_factory=list)
    speakers: list[int] = field(default_factory=list)
    found: dict[str, Evidence] = field(default_factory=dict)


def generate_dialogues(
    seed: int, conversations: int = 6, sessions: int = 24, probes: int = 22
) -> list[Chat]:
    return [generate_dialogue(seed, i, sessions, probes) for i in range(conversations)]


def generate_dialogue(seed: int, index: int = 0, sessions: int = 24, probes: int = 22) -> Chat:
    if sessions < 8:
        raise ValueError("a dialogue needs at least 8 sessions")
    rng = random.Random(f"dialogue:{seed}:{index}:{sessions}")
    people = rng.sample(lexicon.NAMES, 2)
    plan = Plan(rng, sessions, people)
    drafts = _plan_questions(plan, _mix(probes))
    plan.add_background()
    dates = _dates(rng, sessions)
    built = _assemble(plan, people, dates)
    questions = [_question(d, built, plan, people) for d in drafts]
    name = f"dialogue-{seed}-{index}"
    return Chat("dialogue", name, built.messages, questions)


def _mix(total: int) -> list[str]:
    scale = total / sum(n for _, n in PROBE_MIX)
    kinds = [k for k, n in PROBE_MIX for _ in range(max(1, round(n * scale)))]
    return kinds[:total] if len(kinds) >= total else kinds + ["single"] * (total - len(kinds))


def _dates(rng: random.Random, sessions: int) -> list[datetime]:
    when = datetime(2022 + rng.randint(0, 1), rng.randint(1, 12), rng.randint(1, 28))
    dates = []
    for _ in range(sessions):
        when += timedelta(days=rng.randint(3, 21))
        dates.append(when.replace(hour=rng.randint(8, 22), minute=rng.randint(0, 59)))
    return dates


def _plan_questions(plan: Plan, kinds: list[str]) -> list[dict[str, Any]]:
    drafts = []
    for number, kind in enumerate(kinds):
        if kind == "multi_hop":
            drafts.append(plan.multi_hop(MULTI_HOP[number % len(MULTI_HOP)]))
        elif kind == "update":
            drafts.append(plan.update(UPDATABLE))
        elif kind == "temporal":
            drafts.append(plan.temporal(TEMPORAL))
        else:
            drafts.append(plan.single(kind, SINGLE))
    return drafts


def _slots(values: dict[str, str]) -> dict[str, str]:
    slots = dict(values)
    for key, value in values.items():
        slots[key[:1].upper() + key[1:]] = value[:1].upper() + value[1:]
    return slots


def _render(template: str, values: dict[str, str]) -> tuple[str, str | None]:
    """The text with marks removed, and the marked snippet (None when unmarked)."""
    text = template.format_map(_slots(values))
    marked = _MARK.search(text)
    return _MARK.sub(r"\1", text), marked.group(1) if marked else None


def _event_lines(
    event: Event, rng: random.Random, people: list[str]
) -> list[tuple[int, str, str | None]]:
    """(speaker, text, tag of the snippet it holds) for one event."""
    kind, owner, other = KINDS[event.kind], event.owner, 1 - event.owner
    values = {**event.values, "O": people[owner], "X": people[other]}
    lines: list[tuple[int, str, str | None]] = []

    def say(speaker: int, line: Line, tag: str | None = None) -> None:
        template = text_of(line)
        if (specific := question_of(line)) is not None:
            event.specific.append(specific)
        text, snippet = _render(template, values)
        if tag is not None and snippet is None:
            raise ValueError(f"template without a snippet: {template}")
        lines.append((speaker, text, tag))
        if tag is not None and snippet is not None:
            event.snippet = snippet

    if event.form == "mention":
        if kind.checkins and rng.random() < 0.5:
            say(other, rng.choice(kind.checkins))
            say(owner, rng.choice(kind.mentions))
        else:
            say(owner, rng.choice(kind.mentions))
            if rng.random() < 0.6:
                say(other, rng.choice(kind.reacts))
        return lines
    if event.form == "distractor":
        say(owner, rng.choice(kind.distractors))
        say(other, rng.choice(ASIDES))
        return lines
    if event.form == "adjacent":
        say(other, rng.choice(kind.asks))
        # the whole short reply is the snippet: a bare "Biscuit!" is not a statement
        say(owner, "«" + _MARK.sub(r"\1", text_of(rng.choice(kind.replies))) + "»", event.tag)
        if rng.random() < 0.7:
            say(other, rng.choice(kind.reacts))
        return lines
    template = {
        "statement": lambda: rng.choice(kind.states),
        "when": lambda: rng.choice(kind.when_states),
        "revision": lambda: rng.choice(kind.revisions),
    }[event.form]()
    say(owner, template, event.tag)
    say(other, "Wait, really? What happened?" if event.form == "revision" else
        rng.choice(kind.reacts))  # fmt: skip
    if event.form == "revision":
        say(owner, "Long story, but it's for the best.")
    elif rng.random() < 0.35:
        say(owner, rng.choice(FOLLOW_UPS))
    return lines


def _assemble(plan: Plan, people: list[str], dates: list[datetime]) -> _Built:
    rng = plan.rng
    built = _Built()
    tags = plan.by_tag
    built.messages.append(
        {"role": "system", "content": f"A chat between two friends, {people[0]} and {people[1]}."}
    )
    for number, when in enumerate(dates):
        starter = 0 if not built.speakers else 1 - built.speakers[-1]
        opening, date_text = talk.opener(rng, when)
        threads: list[list[tuple[int, str, str | None]]] = []
        for event in plan.events_in(number):
            _fill_time(event, when)
            threads.append(_event_lines(event, rng, people))
        target = rng.randint(24, 36)
        fillers: set[int] = set()
        remarks: set[int] = set()
        while sum(len(t) for t in threads) + 4 < target:
            first = rng.randint(0, 1)
            threads.append(
                [(first if role == "S" else 1 - first, text, None) for role, text in
                 talk.filler(rng, fillers)]
            )  # fmt: skip
        rng.shuffle(threads)
        head = [(starter if r == "S" else 1 - starter, t, None) for r, t in opening]
        close_first = rng.randint(0, 1)
        tail = [(close_first if r == "S" else 1 - close_first, t, None)
                for r, t in talk.closer(rng)]  # fmt: skip
        start = len(built.messages)
        for lines in [head, *threads, tail]:
            for speaker, text, tag in lines:
                if rng.random() < REMARK_SHARE:
                    text = f"{text} {talk.remark(rng, remarks)}"
                snippet = tags[tag].snippet if tag else None
                _append(built, people, speaker, text, tag, snippet)
        built.found[f"date:{number}"] = Evidence(start, (date_text,))
    return built


def _append(
    built: _Built,
    people: list[str],
    speaker: int,
    text: str,
    tag: str | None,
    snippet: str | None,
) -> None:
    text = text.replace("{X}", people[1 - speaker])
    if built.speakers and built.speakers[-1] == speaker:
        # a friend sending two things in a row: one message, as a chat app would merge it
        message = built.messages[-1]
        message["content"] = f"{message['content']} {text}"
    else:
        role = "user" if speaker == 0 else "assistant"
        built.messages.append({"role": role, "name": people[speaker], "content": text})
        built.speakers.append(speaker)
    if tag is not None and snippet is not None:
        built.found[tag] = Evidence(len(built.messages) - 1, (snippet,))


def _fill_time(event: Event, when: datetime) -> None:
    if event.form != "when":
        return
    phrase, days, answer = event.values["ago"], 0, ""
    for said, before, shape in AGO:
        if said == phrase:
            days, answer = before, shape
    saturday = when - timedelta(days=(when.weekday() - 5) % 7 or 7)

    def day(d: datetime) -> str:
        return f"{d.day} {d:%B %Y}"

    event.values["when"] = answer.format(
        d0=day(when), d1=day(when - timedelta(days=1)), d14=day(when - timedelta(days=days)),
        m30=f"{(when - timedelta(days=30)):%B %Y}", sat=day(saturday),
    )  # fmt: skip


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower())) - _FUNCTION_WORDS


def _wording(draft: dict[str, Any], built: _Built, values: dict[str, str],
             rng: random.Random) -> tuple[str, Any]:  # fmt: skip
    """Picks the question's wording: one that echoes its source turn `ECHO` of the time."""
    pairs = list(draft["pairs"])
    if draft["kind"] in ("single", "adjacent", "update"):
        pairs += draft["events"][0].specific
    position = built.found[draft["events"][0].tag].position
    if draft["kind"] == "adjacent":
        position -= 1  # the asking turn
    source = _words(str(built.messages[position]["content"])) - _words(values["O"])
    echoing = [p for p in pairs if _words(p[0].format_map(values)) & source]
    others = [p for p in pairs if p not in echoing]
    if echoing and (not others or rng.random() < ECHO):
        return rng.choice(echoing)
    return rng.choice(others)


def _question(draft: dict[str, Any], built: _Built, plan: Plan, people: list[str]) -> Question:
    values = {**draft["values"], "O": people[draft["owner"]]}
    for event in draft["events"]:
        values.update({k: v for k, v in event.values.items() if k == "when"})
    question, keywords = _wording(draft, built, values, plan.rng)
    keywords = keywords if isinstance(keywords, tuple) else (keywords,)
    evidence = tuple(built.found[e.tag] for e in draft["events"])
    date = None
    if draft["kind"] == "temporal":
        date = built.found[f"date:{draft['events'][0].session}"]
    stale = tuple(built.found[e.tag] for e in draft.get("stale", ()))
    answer = values["when"] if draft["kind"] == "temporal" else values[draft["answer"]]
    return Question(
        kind=draft["kind"],
        question=question.format_map(values),
        answer=answer,
        keywords=tuple(k.format_map(values) for k in keywords),
        evidence=evidence,
        date=date,
        stale=stale,
    )
