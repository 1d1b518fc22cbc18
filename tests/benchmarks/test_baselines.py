"""Baselines stay inside the budget and pick what they claim to pick."""

from __future__ import annotations

import pytest

from benchmarks.recall.baselines import History, bm25_body, truncation_body
from benchmarks.recall.counting import count_prompt
from benchmarks.recall.drive import run_baseline
from benchmarks.recall.generate import generate


@pytest.fixture(scope="module")
def history() -> History:
    return History(generate(turns=300, seed=9, probes=12))


@pytest.mark.parametrize("build", [truncation_body, bm25_body])
@pytest.mark.parametrize("budget", [1200, 2000, 4000])
def test_prompts_fit_the_budget_less_the_reply(history: History, build, budget: int) -> None:
    for probe in history.conversation.probes:
        body = build(history, probe.question, budget, 256)
        assert count_prompt(body["messages"], body["tools"]) <= budget - 256
        assert body["messages"][0] == history.messages[0]
        assert body["messages"][-1] == {"role": "user", "content": probe.question}
        assert body["messages"][1]["role"] != "tool"
        assert body["max_tokens"] == 256 and body["tools"] == history.conversation.tools


def test_truncation_keeps_the_newest_messages(history: History) -> None:
    body = truncation_body(history, "What is my locker code?", 3000, 256)
    kept = body["messages"][1:-1]
    assert kept == history.messages[len(history.messages) - len(kept) :]
    bigger = truncation_body(history, "What is my locker code?", 6000, 256)
    assert len(bigger["messages"]) > len(body["messages"])


def test_bm25_packs_the_matching_turn_and_the_last_turns_in_order(history: History) -> None:
    conversation = history.conversation
    probe = next(p for p in conversation.probes if p.kind == "fact")
    body = bm25_body(history, probe.question, 4000, 256)
    packed = body["messages"][1:-1]
    assert conversation.messages[probe.evidence[0].position] in packed
    assert packed[-2:] == history.messages[-2:]
    where = {id(m): i for i, m in enumerate(history.messages)}
    positions = [where[id(m)] for m in packed]
    assert positions == sorted(positions)


def test_baseline_run_judges_each_probe_once(history: History) -> None:
    records, feed = run_baseline("truncation", history, 4000, 256)
    assert len(records) == len(history.conversation.probes)
    assert all(r.round_trips == 1 and r.faults == 0 for r in records)
    assert all(r.max_prompt_tokens <= 4000 - 256 < r.full_tokens for r in records)
    assert not any(r.visible for r in records)  # every fact is far behind a 4k window
    assert feed.turns == 200 and 0 < feed.prefix_share < 1
