"""The generated conversations: deterministic, well-formed, and every probe answerable from
exactly its evidence."""

from __future__ import annotations

import json

import pytest

from benchmarks.recall import grammar
from benchmarks.recall.answering import find_answer
from benchmarks.recall.generate import Conversation, generate
from benchmarks.recall.reading import Passage


@pytest.fixture(scope="module")
def conversation() -> Conversation:
    return generate(turns=400, seed=11, probes=30)


def test_same_seed_same_conversation(conversation: Conversation) -> None:
    again = generate(turns=400, seed=11, probes=30)
    assert again.messages == conversation.messages
    assert again.probes == conversation.probes


def test_other_seed_other_conversation(conversation: Conversation) -> None:
    other = generate(turns=400, seed=12, probes=30)
    assert other.messages != conversation.messages
    assert [p.question for p in other.probes] != [p.question for p in conversation.probes]


def test_turns_cover_the_messages_and_tool_calls_are_answered(conversation: Conversation) -> None:
    messages = conversation.messages
    assert messages[0]["role"] == "system"
    assert len(conversation.turns) == 400
    assert conversation.turns[0].start == 1 and conversation.turns[-1].stop == len(messages)
    for turn, following in zip(conversation.turns, conversation.turns[1:], strict=False):
        assert turn.stop == following.start
    for turn in conversation.turns:
        assert messages[turn.start]["role"] == "user"
        assert messages[turn.stop - 1]["role"] == "assistant"
    for index, message in enumerate(messages):
        for call in message.get("tool_calls") or []:
            result = messages[index + 1]
            assert result["role"] == "tool" and result["tool_call_id"] == call["id"]
            json.loads(result["content"])


def test_every_kind_of_probe_is_there(conversation: Conversation) -> None:
    kinds = {p.kind for p in conversation.probes}
    assert kinds == {"fact", "revised", "pair", "tool", "const", "func"}
    assert len(conversation.probes) == 30


def test_evidence_holds_the_answer_and_nothing_else_does(conversation: Conversation) -> None:
    texts = [m.get("content") or "" for m in conversation.messages]
    for probe in conversation.probes:
        for evidence in probe.evidence:
            assert evidence.snippet in texts[evidence.position]
            holders = [i for i, text in enumerate(texts) if evidence.snippet in text]
            assert holders == [evidence.position], probe.question
        joined = " ".join(e.snippet for e in probe.evidence)
        assert all(value in joined for value in probe.answers)


def test_evidence_is_far_back(conversation: Conversation) -> None:
    last = conversation.turns[-1].stop
    for probe in conversation.probes:
        assert max(e.position for e in probe.evidence) < last - 2 * 40


def test_revised_facts_keep_only_the_newest_value_as_answer(conversation: Conversation) -> None:
    texts = [m.get("content") or "" for m in conversation.messages]
    revised = [p for p in conversation.probes if p.kind == "revised"]
    assert revised
    for probe in revised:
        (evidence,) = probe.evidence
        (old,) = probe.stale
        assert old != probe.answers[0]
        assert " is now " in evidence.snippet
        attr = grammar.parse_question(probe.question)
        assert attr is not None
        stated_old = [
            i for i, t in enumerate(texts) if f"{attr.subject} is {old}".lower() in t.lower()
        ]
        assert stated_old and stated_old[0] < evidence.position


def test_pairs_need_two_turns(conversation: Conversation) -> None:
    for probe in (p for p in conversation.probes if p.kind == "pair"):
        first, second = probe.evidence
        assert first.position < second.position
        assert len(probe.answers) == 2


def test_the_models_rule_reads_back_exactly_the_answer(conversation: Conversation) -> None:
    texts = [m.get("content") or "" for m in conversation.messages]
    for probe in conversation.probes:
        ask = grammar.parse_question(probe.question)
        passages = [Passage(texts[e.position], e.position) for e in probe.evidence]
        assert find_answer(ask, passages).values == probe.answers, probe.question


def test_too_short_is_refused() -> None:
    with pytest.raises(ValueError):
        generate(turns=50, seed=1)
