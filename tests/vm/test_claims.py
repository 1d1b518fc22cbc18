from __future__ import annotations

import pytest

from proxy.vm.claims import MAX_PER_MESSAGE, extract_claims


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
