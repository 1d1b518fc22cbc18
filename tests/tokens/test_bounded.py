"""Counting huge text in bounded time (issue 13): exact up to a prefix, estimated beyond.

tiktoken's BPE is superlinear on a long run of one character, and a megabyte of spaces
overflows its regex stack (a Rust panic that is no Exception). One message must cost
bounded time whatever it holds."""

from __future__ import annotations

import pytest

from proxy.tokens import counter_for_model
from proxy.tokens._counter import EXACT_CHARS

COUNTER = counter_for_model("gpt-4o-mini")


def exact(text: str) -> int:
    return len(COUNTER.encoding.encode_ordinary(text))


def test_a_megabyte_of_spaces_is_counted_not_a_crash() -> None:
    # Before the bound: pyo3_runtime.PanicException (RuntimeError(StackOverflow)).
    tokens = COUNTER.text(" " * 1_000_000, memo=False)
    assert 1_000_000 / 200 < tokens < 1_000_000 / 64


@pytest.mark.parametrize(
    "text",
    [
        "a" * 400_000,
        "7" * 400_000,
        "We decided to use Postgres for the store, and Redis for the queue. " * 6000,
        "漢字かな交じり文" * 50_000,
    ],
    ids=["one-char", "digits", "prose", "cjk"],
)
def test_long_text_is_estimated_within_a_percent(text: str) -> None:
    assert len(text) > EXACT_CHARS * 4
    counted = COUNTER.text(text, memo=False)
    assert abs(counted - exact(text)) <= exact(text) * 0.01


def test_text_up_to_the_bound_is_counted_exactly() -> None:
    text = "Some prose, with numbers 12345 and words. " * (EXACT_CHARS // 42)
    assert len(text) <= EXACT_CHARS
    assert COUNTER.text(text, memo=False) == exact(text)
    assert COUNTER.text(text) == exact(text)


def test_a_message_of_a_huge_text_is_counted() -> None:
    message = {"role": "user", "content": " " * 3_000_000}
    assert COUNTER.message(message) > 3_000_000 / 200
