from __future__ import annotations

import pytest

from proxy.vm.claims import MAX_PER_MESSAGE, extract_claims, statements


@pytest.mark.parametrize(
    "sentence",
    [
        "We decided to use PostgreSQL 16 for production.",
        "Let's go with the blue theme for the dashboard.",
        "My budget for the trip is 4,000 EUR.",
        "I live in Lisbon with two cats.",
        "Remember that the staging password rotates monthly.",
        "Never deploy to production on a Friday afternoon.",
        "The deadline is March 3rd for the migration.",
        "Porto has 230,000 inhabitants in the city proper.",
    ],
)
def test_user_claims(sentence: str) -> None:
    assert extract_claims(f"Hello there. {sentence} Thanks!", "user") == [sentence]


@pytest.mark.parametrize(
    "text",
    [
        "What is my budget for the trip?",
        "Nice weather today, isn't it.",
        "ok",
        "```\nwe decided = True\n```",
        "I tried to remember the lab door code today and blanked for a second.",
        "Honestly I'm not sure whether to keep learning guitar as an adult.",
        "Someone at work swears that you should always let the dough rest overnight.",
        "The milk never gets that glossy texture, and it's getting frustrating.",
        "I should really store Rahul's favorite restaurant in a password manager.",
    ],
)
def test_not_claims(text: str) -> None:
    assert extract_claims(text, "user") == []


def test_assistant_text_only_yields_decisions() -> None:
    text = "I live on a server. We agreed to keep the API versioned. Paris has 2 million people."
    assert extract_claims(text, "assistant") == ["We agreed to keep the API versioned."]
    assert extract_claims("We decided to ship.", "tool") == []


def test_at_most_a_few_per_message_strongest_first_in_order() -> None:
    text = " ".join(
        [
            "I like tea a lot.",
            "Remember the door code is 4521.",
            "I work at Acme Corp now.",
            "We decided to hire two people.",
            "My dog is called Rex.",
        ]
    )
    claims = extract_claims(text, "user")
    assert len(claims) == MAX_PER_MESSAGE
    assert (
        claims
        == [
            "Remember the door code is 4521.",
            "I work at Acme Corp now.",
            "We decided to hire two people.",
        ]
        or "We decided to hire two people." in claims
    )
    assert [text.index(c) for c in claims] == sorted(text.index(c) for c in claims)


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Small correction, my passport expiry date is now February 26.",
         ("passport expiry date", "February 26")),
        ("Scratch that — Dmitri's desk extension is now 6243.",
         ("dmitri's desk extension", "6243")),
        ("The storage room door code is 38401.", ("storage room door code", "38401")),
        ("By the way, my dentist is Dr Lindqvist, in case I ask later.",
         ("dentist", "Dr Lindqvist")),
        ("My budget for the trip is 4,000 EUR.", ("budget for the trip", "4,000 EUR")),
        ("My calendar is a mess this month.", None),
        ("I tried to remember the lab door code today.", None),
        ("Is the lab door code 1234?", None),
    ],
)
def test_statement_subject_and_value(sentence: str, expected: tuple[str, str] | None) -> None:
    found = statements(sentence)
    assert (found[0] if found else None) == expected
    if expected is not None:
        assert extract_claims(sentence, "user") == [sentence]
