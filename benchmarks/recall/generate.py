"""Seeded, deterministic long conversations with recall probes.

A conversation is a list of OpenAI chat messages (position 0 is the system prompt) made of
turns: a user message and the assistant's reply, sometimes with a client tool call and its
JSON result in between. Among filler chit-chat it states facts once (asked about hundreds of
turns later), revises some (only the newest counts), splits some over two turns, looks
things up with tools and writes long code blocks. Each `Probe` is a question asked at the
end, against the whole history, with the answer strings and the evidence positions.

    conversation = generate(turns=2000, seed=7)
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

from benchmarks.recall import catalog, codegen, filler, grammar
from benchmarks.recall.tools import CLIENT_TOOLS, Lookup, make_lookup, make_weather

SYSTEM_PROMPT = (
    "You are a friendly, concise assistant for Alex. Help with everyday questions, remember "
    "what Alex tells you, and use the tools to look things up when asked."
)
ACKS = (
    "Noted, I'll keep that in mind.",
    "Got it, I've made a note of it.",
    "Sure, noted for later.",
    "Thanks, I'll remember that.",
    "Okay, saved that for you.",
)
PROBE_MIX = (
    ("fact", 0.3),
    ("revised", 0.2),
    ("pair", 0.15),
    ("tool", 0.15),
    ("const", 0.1),
    ("func", 0.1),
)


@dataclass(frozen=True, slots=True)
class Evidence:
    position: int
    snippet: str


@dataclass(frozen=True, slots=True)
class Probe:
    kind: str
    question: str
    answers: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    stale: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Turn:
    """Messages `start` (the user's) up to `stop` (exclusive) of the conversation."""

    start: int
    stop: int


@dataclass
class Conversation:
    seed: int
    messages: list[dict[str, Any]]
    turns: list[Turn]
    probes: list[Probe]
    tools: list[dict[str, Any]] = field(default_factory=lambda: list(CLIENT_TOOLS))


@dataclass
class _Plan:
    """What happens at which turn; turns without an entry are filler."""

    n_turns: int
    rng: random.Random
    at: dict[int, tuple[str, Any]] = field(default_factory=dict)

    def free_turn(self, lo: int, hi: int) -> int:
        for _ in range(10_000):
            turn = self.rng.randrange(lo, max(lo + 1, hi))
            if turn not in self.at:
                return turn
        raise ValueError("conversation too short for this many events")


def generate(turns: int, seed: int, probes: int = 30) -> Conversation:
    """A conversation of `turns` turns (at least 200) with `probes` probes."""
    if turns < 200:
        raise ValueError("conversations need at least 200 turns")
    rng = random.Random(f"recall:{seed}:{turns}")
    plan = _Plan(turns, rng)
    pending = _plan_probes(plan, probes)
    _plan_noise(plan)
    return _assemble(plan, pending, seed)


def _counts(total: int) -> dict[str, int]:
    counts = {kind: int(total * share) for kind, share in PROBE_MIX}
    for kind, _ in PROBE_MIX:
        if sum(counts.values()) >= total:
            break
        counts[kind] += 1
    return counts


def _plan_probes(plan: _Plan, total: int) -> list[dict[str, Any]]:
    """Places the stated side of every probe; returns the probe drafts, completed later
    with positions once messages exist."""
    rng, n = plan.rng, plan.n_turns
    latest = n - max(50, n // 10)  # facts are asked about at least this far back
    attrs, events = catalog.attributes(rng), catalog.events(rng)
    drafts: list[dict[str, Any]] = []
    used_values: set[str] = set()

    def value(shape: str) -> str:
        for _ in range(50):
            candidate = catalog.make_value(rng, shape)
            if candidate not in used_values:
                break
        used_values.add(candidate)
        return candidate

    for kind, count in _counts(total).items():
        for _ in range(count):
            draft: dict[str, Any] = {"kind": kind}
            if kind in ("fact", "revised"):
                attr, shape = attrs.pop()
                draft.update(attr=attr, value=value(shape))
                first = plan.free_turn(2, latest - n // 10 if kind == "revised" else latest)
                plan.at[first] = ("state", draft)
                if kind == "revised":
                    draft.update(old=draft["value"], value=value(shape))
                    plan.at[plan.free_turn(first + n // 20, latest)] = ("revise", draft)
                # mentions without the value, before and after: search must rank past them
                for _ in range(rng.randint(1, 4)):
                    plan.at[plan.free_turn(2, n - 2)] = ("distract", draft)
            elif kind == "pair":
                event, slots = events.pop()
                draft.update(
                    event=event, slots=slots, values=tuple(value(shape) for _, shape in slots)
                )
                first = plan.free_turn(2, latest - n // 10)
                plan.at[first] = ("pair", (draft, 0))
                plan.at[plan.free_turn(first + 1, first + n // 10)] = ("pair", (draft, 1))
                for _ in range(rng.randint(1, 3)):
                    plan.at[plan.free_turn(2, n - 2)] = ("chatter", draft)
            elif kind == "tool":
                draft["lookup"] = make_lookup(rng)
                plan.at[plan.free_turn(2, latest)] = ("lookup", draft)
            else:
                plan.at[plan.free_turn(2, latest)] = ("code", draft)
            drafts.append(draft)
    return drafts


def _plan_noise(plan: _Plan) -> None:
    """Filler lookups, unprobed code blocks and facts nobody asks about."""
    n = plan.n_turns
    for _ in range(n // 30):
        plan.at[plan.free_turn(1, n - 1)] = ("weather", None)
    for _ in range(n // 250):
        plan.at[plan.free_turn(1, n - 1)] = ("code", None)


def _assemble(plan: _Plan, drafts: list[dict[str, Any]], seed: int) -> Conversation:
    rng = plan.rng
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    turns: list[Turn] = []
    names = codegen.NamePool(rng)
    for index in range(plan.n_turns):
        start = len(messages)
        action, payload = plan.at.get(index, ("filler", None))
        if action == "state":
            _say(
                rng,
                messages,
                grammar.FACT_STATEMENTS,
                payload["attr"],
                payload.get("old", payload["value"]),
            )
            payload["first_position"] = start
        elif action == "revise":
            _say(rng, messages, grammar.FACT_REVISIONS, payload["attr"], payload["value"])
            payload["revision_position"] = start
        elif action == "distract":
            text = rng.choice(grammar.FACT_DISTRACTIONS).format(attr=payload["attr"])
            _chat(rng, messages, prefix=grammar.capital(text) + " Anyway. ")
        elif action == "chatter":
            text = rng.choice(grammar.EVENT_CHATTER).format(event=payload["event"])
            _chat(rng, messages, prefix=text + " Anyway. ")
        elif action == "pair":
            draft, part = payload
            slot = draft["slots"][part][0]
            statement = rng.choice(grammar.PAIR_STATEMENTS).format(
                event=draft["event"], slot=slot, value=draft["values"][part]
            )
            messages += [
                {"role": "user", "content": grammar.capital(statement)},
                {"role": "assistant", "content": rng.choice(ACKS)},
            ]
            draft.setdefault("positions", {})[part] = start
        elif action in ("lookup", "weather"):
            lookup = payload["lookup"] if action == "lookup" else make_weather(rng)
            _tool_exchange(rng, messages, lookup)
            if payload is not None:
                payload["position"] = start + 2
        elif action == "code":
            _code_turn(rng, messages, names, payload)
            if payload is not None:
                payload["position"] = start + 1
        else:
            _chat(rng, messages)
        turns.append(Turn(start, len(messages)))
    drafted = [_finish(rng, draft, messages) for draft in drafts]
    probes = [probe for probe in drafted if probe is not None]
    rng.shuffle(probes)
    return Conversation(seed, messages, turns, probes)


def _chat(rng: random.Random, messages: list[dict[str, Any]], prefix: str = "") -> None:
    topic, text = filler.filler_user(rng)
    messages += [
        {"role": "user", "content": prefix + text},
        {"role": "assistant", "content": filler.filler_reply(rng, topic)},
    ]


def _say(
    rng: random.Random,
    messages: list[dict[str, Any]],
    templates: tuple[str, ...],
    attr: str,
    value: str,
) -> None:
    text = rng.choice(templates).format(attr=attr, Attr=grammar.capital(attr), value=value)
    reply = rng.choice(ACKS)
    if rng.random() < 0.5:
        topic, question = filler.filler_user(rng)
        text = f"{text} Also, {question[:1].lower()}{question[1:]}"
        reply = f"{reply} {filler.filler_reply(rng, topic)}"
    messages += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]


def _tool_exchange(rng: random.Random, messages: list[dict[str, Any]], lookup: Lookup) -> None:
    call_id = f"call_{rng.getrandbits(64):016x}"
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": lookup.tool, "arguments": json.dumps(lookup.arguments)},
    }
    messages += [
        {"role": "user", "content": lookup.request},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": lookup.content},
        {"role": "assistant", "content": lookup.reply},
    ]


def _code_turn(
    rng: random.Random,
    messages: list[dict[str, Any]],
    names: codegen.NamePool,
    draft: dict[str, Any] | None,
) -> None:
    if not names.has_room(5, 5):
        _chat(rng, messages)
        return
    module = rng.choice(codegen.MODULES)
    block = codegen.make_code_block(rng, names, module)
    request = (
        f"Can you write the {module} for our {rng.choice(codegen.PROJECTS)} service? "
        "Keep the tunables as constants at the top."
    )
    reply = (
        f"Here's a first version of the {module}:\n\n{block.text}\n\n"
        "The constants at the top are the knobs you'll most likely want to tune."
    )
    messages += [{"role": "user", "content": request}, {"role": "assistant", "content": reply}]
    if draft is not None:
        draft["block"] = block


def _finish(
    rng: random.Random, draft: dict[str, Any], messages: list[dict[str, Any]]
) -> Probe | None:
    kind = draft["kind"]
    if kind in ("fact", "revised"):
        attr = draft["attr"]
        position = draft["revision_position" if kind == "revised" else "first_position"]
        question = rng.choice(grammar.FACT_QUESTIONS).format(attr=attr)
        snippet = _snippet(grammar.fact_rule(attr), messages[position]["content"])
        stale = (draft["old"],) if kind == "revised" else ()
        return Probe(kind, question, (draft["value"],), (Evidence(position, snippet),), stale)
    if kind == "pair":
        (slot_a, _), (slot_b, _) = draft["slots"]
        question = rng.choice(grammar.PAIR_QUESTIONS).format(
            event=draft["event"], slot_a=slot_a, slot_b=slot_b
        )
        evidence = tuple(
            Evidence(
                draft["positions"][part],
                _snippet(
                    grammar.pair_rule(draft["event"], slot),
                    messages[draft["positions"][part]]["content"],
                ),
            )
            for part, slot in enumerate((slot_a, slot_b))
        )
        return Probe(kind, question, tuple(draft["values"]), evidence)
    if kind == "tool":
        lookup: Lookup = draft["lookup"]
        name, value = rng.choice(sorted(lookup.fields.items()))
        question = rng.choice(grammar.TOOL_QUESTIONS).format(
            field=name.replace("_", " "), entity=lookup.entity, key=lookup.key
        )
        snippet = json.dumps({name: value})[1:-1]
        return Probe(kind, question, (value,), (Evidence(draft["position"], snippet),))
    block: codegen.CodeBlock | None = draft.get("block")
    if block is None:
        return None
    if kind == "const":
        name, value = rng.choice(block.consts)
        question = rng.choice(grammar.CONST_QUESTIONS).format(module=block.module, name=name)
        return Probe(kind, question, (value,), (Evidence(draft["position"], f"{name} = {value}"),))
    purpose, name = rng.choice(block.funcs)
    question = rng.choice(grammar.FUNC_QUESTIONS).format(module=block.module, purpose=purpose)
    return Probe(kind, question, (name,), (Evidence(draft["position"], f"def {name}("),))


def _snippet(rule: re.Pattern[str], text: str) -> str:
    match = rule.search(text)
    if match is None:
        raise AssertionError(f"generator wrote a fact its own rule cannot read: {text!r}")
    return match.group(0)
