"""A question's clauses (proxy.vm.query_parts): cut before the words that open a clause,
never at the question's first word, and only when two or three clauses say enough each."""

from __future__ import annotations

import pytest

from proxy.vm.query_parts import MAX_WORDS, query_parts


def test_a_question_joining_two_facts_gives_a_clause_for_each() -> None:
    assert query_parts("How many years will I be when my friend Rachel gets married?") == [
        "How many years will I be", "when my friend Rachel gets married",
    ]  # fmt: skip
    assert query_parts("What was the first city Diego visited AFTER getting promoted?") == [
        "What was the first city Diego visited", "AFTER getting promoted",
    ]  # fmt: skip


@pytest.mark.parametrize("text", [
    "When did Diego break a wrist?",  # the clause word opens the question
    "What happened when Maya slipped?",  # "What happened" says too little
    "Where does Joel live?",
    "",
    "Did the band play whenever it rained wherever they went?",  # only begin like one
])  # fmt: skip
def test_a_question_of_one_clause_has_no_parts(text: str) -> None:
    assert query_parts(text) == []


def test_a_long_message_or_many_clauses_are_not_cut() -> None:
    long = "I told you about it " * (MAX_WORDS // 5 + 1) + "when we met at the fair"
    assert query_parts(long) == []
    many = "we met there when it rained while it snowed before it was cold after all that"
    assert query_parts(many) == []
