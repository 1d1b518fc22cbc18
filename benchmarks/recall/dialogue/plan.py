"""Who says what in which session: each friend's profile (one value per kind of fact,
drawn without repeats across the two), the events that carry the asked facts, and the
background around them (the other friend's facts of the same kinds, later mentions,
distractor remarks, trips)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.recall.dialogue import lexicon
from benchmarks.recall.dialogue.facts import KINDS, SINGLE

AGO_PHRASES = ("yesterday", "last weekend", "last week", "two weeks ago", "a few days ago",
               "last month", "on Saturday")  # fmt: skip


@dataclass
class Event:
    session: int
    owner: int  # 0 or 1: who the fact (or remark) belongs to
    kind: str
    form: str  # statement | adjacent | when | revision | mention | distractor
    values: dict[str, str]
    tag: str | None = None  # set on events that hold a snippet
    snippet: str | None = None
    # questions only the wording it was told in can answer (facts.Line)
    specific: list[tuple[str, str]] = field(default_factory=list)


class _Pool:
    """Draws values without repeats within one conversation."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.taken: set[str] = set()

    def take(self, pool: Sequence[str]) -> str:
        left = [v for v in pool if v not in self.taken]
        value = self.rng.choice(left)
        self.taken.add(value)
        return value


def profile(rng: random.Random, pool: _Pool, people: list[str]) -> dict[str, dict[str, str]]:
    species = rng.choice(sorted(lexicon.SPECIES))
    young, breeds = lexicon.SPECIES[species]
    injury, injury_q, part = rng.choice(lexicon.INJURIES)
    relation = rng.choice(lexicon.SIBLINGS)
    sib = pool.take([n for n in lexicon.NAMES if n not in people])
    return {
        "pet": {"species": species, "young": young, "breed": rng.choice(breeds),
                "pet": pool.take(lexicon.PET_NAMES), "species2": species},
        "instrument": {"instrument": pool.take(lexicon.INSTRUMENTS),
                       "instrument2": pool.take(lexicon.INSTRUMENTS)},
        "job": {"company": pool.take(lexicon.COMPANIES), "new": pool.take(lexicon.COMPANIES)},
        "move": {"city": pool.take(lexicon.CITIES), "new": pool.take(lexicon.CITIES)},
        "sport": {"sport": pool.take(lexicon.SPORTS), "new": pool.take(lexicon.SPORTS),
                  "sport2": pool.take(lexicon.SPORTS)},
        "vehicle": {"vehicle": pool.take(lexicon.VEHICLES)},
        "sibling": {"sib": sib, "relation": relation},
        "sibling_move": {"sib": sib, "relation": relation, "city": pool.take(lexicon.CITIES)},
        "book": {"book": pool.take(lexicon.BOOKS), "new": pool.take(lexicon.BOOKS)},
        "course": {"course": pool.take(lexicon.COURSES)},
        "injury": {"injury": injury, "injury_q": injury_q, "part": part},
        "promotion": {"role": pool.take(lexicon.ROLES)},
        "concert": {"band": pool.take(lexicon.BANDS)},
    }  # fmt: skip


@dataclass
class Plan:
    rng: random.Random
    sessions: int
    people: list[str]
    profiles: list[dict[str, dict[str, str]]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    used: set[tuple[int, str]] = field(default_factory=set)
    trips: dict[int, set[int]] = field(default_factory=lambda: {0: set(), 1: set()})
    no_trips: dict[int, set[int]] = field(default_factory=lambda: {0: set(), 1: set()})

    def __post_init__(self) -> None:
        self.pool = _Pool(self.rng)
        self.profiles = [profile(self.rng, self.pool, self.people) for _ in range(2)]

    @property
    def by_tag(self) -> dict[str, Event]:
        return {e.tag: e for e in self.events if e.tag}

    def events_in(self, session: int) -> list[Event]:
        return [e for e in self.events if e.session == session]

    def _event(self, session: int, owner: int, kind: str, form: str,
               extra: dict[str, str] | None = None, tagged: bool = True) -> Event:  # fmt: skip
        values = {**self.profiles[owner].get(kind, {}), **(extra or {})}
        tag = f"e{len(self.events)}" if tagged else None
        event = Event(session, owner, kind, form, values, tag)
        self.events.append(event)
        return event

    def _slot(self, kinds: Sequence[str]) -> tuple[int, str]:
        free = [(o, k) for o in (0, 1) for k in kinds if (o, k) not in self.used]
        if not free:
            raise ValueError("no fact left to ask about: lower the number of questions")
        owner, kind = self.rng.choice(free)
        self.used.add((owner, kind))
        return owner, kind

    def _session(self, lo: int = 0, hi: int | None = None) -> int:
        hi = self.sessions - 1 if hi is None else min(hi, self.sessions - 1)
        return self.rng.randint(lo, max(lo, hi))

    def _trip(self, owner: int, lo: int = 0, hi: int | None = None, form: str = "statement",
              extra: dict[str, str] | None = None) -> Event | None:  # fmt: skip
        hi = self.sessions - 1 if hi is None else min(hi, self.sessions - 1)
        free = [s for s in range(lo, hi + 1)
                if s not in self.trips[owner] and s not in self.no_trips[owner]]  # fmt: skip
        if not free:
            return None
        session = self.rng.choice(free)
        self.trips[owner].add(session)
        city = {"city": self.pool.take(lexicon.CITIES)}
        return self._event(session, owner, "trip", form, {**city, **(extra or {})})

    def _draft(self, kind: str, owner: int, pairs: Sequence[tuple[str, Any]], answer: str,
               events: list[Event], **more: Any) -> dict[str, Any]:  # fmt: skip
        """A question to be worded once its evidence is: `pairs` are the candidate
        (question, keywords) wordings."""
        values: dict[str, str] = {}
        for event in events:
            values.update(event.values)
        return {"kind": kind, "owner": owner, "pairs": list(pairs), "answer": answer,
                "values": values, "events": events, **more}  # fmt: skip

    def single(self, label: str, kinds: Sequence[str]) -> dict[str, Any]:
        owner, kind = self._slot(kinds)
        form = "adjacent" if label == "adjacent" else "statement"
        event = self._event(self._session(), owner, kind, form)
        return self._draft(label, owner, KINDS[kind].questions, KINDS[kind].answer, [event])

    def temporal(self, kinds: Sequence[str]) -> dict[str, Any]:
        extra = {"ago": self.rng.choice(AGO_PHRASES)}
        kind = self.rng.choice(kinds)
        if kind == "trip":
            owner = self.rng.randint(0, 1)
            event = self._trip(owner, form="when", extra=extra)
            if event is None:
                return self.temporal([k for k in kinds if k != "trip"])
        else:
            owner, kind = self._slot([k for k in kinds if k != "trip"])
            event = self._event(self._session(), owner, kind, "when", extra)
        return self._draft("temporal", owner, KINDS[kind].when, "when", [event])

    def update(self, kinds: Sequence[str]) -> dict[str, Any]:
        owner, kind = self._slot(kinds)
        first = self._session(0, self.sessions - 4)
        old = self._event(first, owner, kind, self.rng.choice(("statement", "adjacent")))
        new = self._event(self._session(first + 3), owner, kind, "revision")
        return self._draft("update", owner, KINDS[kind].update, "new", [new], stale=[old])

    def multi_hop(self, pattern: tuple[str, str, tuple[str, ...]]) -> dict[str, Any]:
        name, question, keywords = pattern
        pair = [(question, keywords)]
        if name == "sibling_city":
            owner, _ = self._slot(["sibling"])
            first = self._session(0, self.sessions - 3)
            sibling = self._event(
                first, owner, "sibling", self.rng.choice(("statement", "adjacent"))
            )
            moved = self._event(self._session(first + 2), owner, "sibling_move", "statement")
            return self._draft("multi_hop", owner, pair, "city", [sibling, moved])
        if name == "pet_of_player":
            free = [o for o in (0, 1) if not {(o, "pet"), (o, "instrument")} & self.used]
            owner = self.rng.choice(free or [0])
            self.used |= {(owner, "pet"), (owner, "instrument")}
            first, second = self.rng.sample(range(self.sessions), 2)
            plays = self._event(
                first, owner, "instrument", self.rng.choice(("statement", "adjacent"))
            )
            pet = self._event(second, owner, "pet", self.rng.choice(("statement", "adjacent")))
            return self._draft("multi_hop", owner, pair, "pet", [plays, pet])
        owner, _ = self._slot(["promotion"])
        promoted = self._session(2, self.sessions - 4)
        answer_session = self._session(promoted + 1, promoted + 4)
        self.no_trips[owner] |= set(range(promoted, answer_session + 1))
        promotion = self._event(promoted, owner, "promotion", "statement")
        before = self._trip(owner, 0, promoted - 1)
        self.no_trips[owner].discard(answer_session)
        trip = self._trip(owner, answer_session, answer_session)
        self.no_trips[owner].add(answer_session)
        if trip is None or before is None:
            raise ValueError("no room for the trips of a multi-hop question")
        return self._draft("multi_hop", owner, pair, "city", [promotion, trip])

    def add_background(self) -> None:
        """The rest of both lives: unasked facts, later mentions, distractors and trips."""
        rng = self.rng
        for owner in (0, 1):
            for kind in SINGLE:
                if (owner, kind) not in self.used and rng.random() < 0.75:
                    form = rng.choice(("statement", "adjacent"))
                    self._event(self._session(), owner, kind, form, tagged=False)
            for _ in range(2):
                self._trip(owner, form=rng.choice(("statement", "adjacent")))
        introduced = [e for e in self.events if e.form != "revision" and KINDS[e.kind].mentions]
        for event in introduced:
            if event.session >= self.sessions - 1:
                continue
            for _ in range(rng.randint(2, 4)):
                self._event(self._session(event.session + 1), event.owner, event.kind,
                            "mention", tagged=False)  # fmt: skip
        kinds = [k for k, v in KINDS.items() if v.distractors]
        for session in range(self.sessions):
            for _ in range(rng.randint(2, 4)):
                owner = rng.randint(0, 1)
                self._event(session, owner, rng.choice(kinds), "distractor", tagged=False)
