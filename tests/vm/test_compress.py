from __future__ import annotations

import json

import orjson

from proxy.tokens import counter_for_model
from proxy.vm.compress import (
    abstract_text,
    make_hint,
    parse_json,
    reduce_text,
)

COUNTER = counter_for_model("gpt-4o")

PROSE = (
    "We spent the morning comparing storage engines for the proxy. SQLite is simple and "
    "embedded, which makes a single-process deployment trivial. PostgreSQL scales to many "
    "replicas and gives us advisory locks. After a long discussion we decided to use "
    "PostgreSQL 16 for production and SQLite for local development. The office coffee "
    "machine was broken again, which nobody enjoyed. Someone suggested ordering pizza for "
    "lunch and everyone agreed that the weather was pleasant. The migration has to be done "
    "before March 3rd because the budget review happens then. Does anyone object to this "
    "plan? We start on Monday."
)
CODE = (
    "Here is the connector:\n```python\n"
    + "\n".join(f"line_{i} = connect({i})" for i in range(40))
    + "\n```\nThat is all of it."
)


def tokens(text: str) -> int:
    return COUNTER.text(text)


def test_level1_is_a_real_extract_keeping_what_matters() -> None:
    reduced = reduce_text(PROSE)
    assert tokens(reduced) < 0.7 * tokens(PROSE)
    assert reduced.startswith("We spent the morning")
    assert "decided to use PostgreSQL 16" in reduced
    assert "coffee machine" not in reduced
    for sentence in reduced.replace("…", "").split(". "):
        assert sentence.strip().rstrip(".") in PROSE


def test_level1_keeps_at_most_two_fifths_of_a_code_block() -> None:
    reduced = reduce_text(CODE)
    assert "line_0 = connect(0)" in reduced and "line_15 = connect(15)" in reduced
    assert "line_16" not in reduced and "(24 more lines)" in reduced
    assert tokens(reduced) < tokens(CODE) / 2


MODULE = """Here's the cache:
```python
\"\"\"Thumbnail cache.\"\"\"

import time
from dataclasses import dataclass

MAX_ENTRIES = 512
BASE_UPLOAD_TIMEOUT_S = 740.0


@dataclass
class Entry:
    key: str
    size: int = 0


def normalize_session_cookies(raw: dict[str, str]) -> dict[str, str]:
    cleaned = {}
    for key, value in raw.items():
        if not key:
            continue
        cleaned[key.strip().lower()] = value.strip()
    return cleaned


async def compute_retry_budgets(limit: int) -> list[int]:
    budgets = []
    for attempt in range(limit):
        budgets.append(2 ** attempt)
        time.sleep(0)
    return budgets
```
Tune the constants at the top."""


def test_level1_of_code_is_its_outline() -> None:
    reduced = reduce_text(MODULE)
    for kept in ("MAX_ENTRIES = 512", "BASE_UPLOAD_TIMEOUT_S = 740.0", "class Entry:",
                 "def normalize_session_cookies(", "async def compute_retry_budgets("):
        assert kept in reduced
    assert "cleaned[key.strip()" not in reduced and "budgets.append" not in reduced
    assert "more lines)" in reduced and reduced.rstrip().endswith("Tune the constants at the top.")
    assert tokens(reduced) < tokens(MODULE) / 2


def test_level1_of_json_is_smaller_json_of_the_same_shape() -> None:
    data = {"results": [{"id": i, "body": "x" * 300} for i in range(30)], "total": 30}
    text = json.dumps(data)
    reduced = reduce_text(text)
    value = orjson.loads(reduced)
    assert value["total"] == 30 and len(value["results"]) == 4
    assert tokens(reduced) < tokens(text) / 5


def test_short_pages_stay_as_they_are_at_level1() -> None:
    assert reduce_text("I live in Lisbon.") == "I live in Lisbon."


def test_level2_is_a_few_dozen_tokens() -> None:
    for text in [PROSE, CODE, json.dumps({"a": list(range(500))}), PROSE * 10]:
        abstract = abstract_text(text)
        assert 3 <= tokens(abstract) <= 60, abstract
    assert "PostgreSQL 16" in abstract_text(PROSE) or "decided" in abstract_text(PROSE)
    assert abstract_text(json.dumps({"city": "Paris", "temp": 21})).startswith("JSON object")


def test_hints_are_short_single_lines() -> None:
    for text in [PROSE, CODE, "line one\nline two", json.dumps([1, 2, 3])]:
        hint = make_hint(text)
        assert "\n" not in hint and len(hint.split()) <= 11


def test_parse_json_only_for_whole_documents() -> None:
    assert parse_json('{"a": 1}') == {"a": 1}
    assert parse_json("[1, 2]") == [1, 2]
    assert parse_json("{not json") is None and parse_json("text {}") is None
