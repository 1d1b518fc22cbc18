"""The dialogue generator: deterministic, shaped like a chat app's history, and honest
about its questions (evidence where it says, keywords from the question alone)."""

from __future__ import annotations

import re

import pytest

from benchmarks.recall.chat.types import Chat, normal
from benchmarks.recall.dialogue.generate import generate_dialogue, generate_dialogues
from proxy.vm.bm25 import search_tokens


@pytest.fixture(scope="module")
def chats() -> list[Chat]:
    return generate_dialogues(seed=3, conversations=2, sessions=12, probes=14)


def test_the_same_seed_makes_the_same_chat() -> None:
    first, again = generate_dialogue(5, 1, 10, 10), generate_dialogue(5, 1, 10, 10)
    assert first.messages == again.messages and first.questions == again.questions
    assert generate_dialogue(6, 1, 10, 10).messages != first.messages


def test_messages_alternate_between_two_named_friends(chats: list[Chat]) -> None:
    for chat in chats:
        system, *rest = chat.messages
        assert system["role"] == "system" and "name" not in system
        assert [m["role"] for m in rest[:2]] == ["user", "assistant"]
        for before, after in zip(rest, rest[1:], strict=False):
            assert before["role"] != after["role"]
        names = {m["role"]: {m["name"]} for m in rest}
        assert len(names["user"] | names["assistant"]) == 2


def test_default_size_is_about_600_messages_and_18k_tokens() -> None:
    from benchmarks.recall.counting import count_prompt

    chat = generate_dialogue(7, 0)
    assert 500 <= len(chat.messages) <= 700
    assert 14_000 <= count_prompt(chat.messages) <= 22_000
    assert len(chat.questions) == 22


def test_evidence_snippets_are_in_their_messages_and_hold_the_answer(chats: list[Chat]) -> None:
    for chat in chats:
        for question in chat.questions:
            for evidence in question.evidence:
                (snippet,) = evidence.texts
                assert snippet in chat.messages[evidence.position]["content"], question
            if question.kind != "temporal":
                held = " ".join(e.texts[0] for e in question.evidence[-1:])
                assert question.answer.lower() in held.lower(), question


def test_temporal_questions_need_the_session_date(chats: list[Chat]) -> None:
    temporal = [(c, q) for c in chats for q in c.questions if q.kind == "temporal"]
    assert temporal
    for chat, question in temporal:
        assert question.date is not None
        opener = chat.messages[question.date.position]["content"]
        assert question.date.texts[0] in opener
        assert re.search(r"\d{4}", question.date.texts[0])
        assert question.date.position <= question.evidence[0].position


def test_keywords_take_no_word_from_outside_the_question(chats: list[Chat]) -> None:
    for chat in chats:
        for question in chat.questions:
            asked = set(search_tokens(question.question))
            assert len(question.keywords) == (2 if question.kind == "multi_hop" else 1)
            for query in question.keywords:
                assert set(search_tokens(query)) <= asked, (query, question.question)


def test_every_kind_of_question_is_asked(chats: list[Chat]) -> None:
    kinds = {q.kind for c in chats for q in c.questions}
    assert kinds == {"single", "adjacent", "temporal", "update", "multi_hop"}


def test_an_adjacent_fact_is_the_reply_to_a_question(chats: list[Chat]) -> None:
    for chat in chats:
        for question in (q for q in chat.questions if q.kind == "adjacent"):
            position = question.evidence[0].position
            asking = chat.messages[position - 1]["content"]
            assert "?" in asking
            assert normal(question.evidence[0].texts[0]) in normal(
                chat.messages[position]["content"]
            )


def test_an_update_keeps_the_old_statement_as_stale(chats: list[Chat]) -> None:
    for chat in chats:
        for question in (q for q in chat.questions if q.kind == "update"):
            (old,) = question.stale
            assert old.position < question.evidence[0].position
