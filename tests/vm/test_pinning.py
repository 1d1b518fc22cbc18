from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from proxy.tokens import counter_for_model
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.pages import Page
from proxy.vm.pinning import fit_pinned, plan_pinned
from tests.vm.conversations import agent_turn, log_lines, tool_conversation

COUNTER = counter_for_model("gpt-4o")


def pages_of(messages: Sequence[Mapping[str, Any]]) -> list[Page]:
    result = ingest_messages(
        messages,
        first_position=0,
        counters=Counters(),
        counter=COUNTER,
        segment_turns=100,
        clock=lambda: 0.0,
    )
    return [p for p in result.pages if p.page_id.startswith("msg_")]


def assert_exchanges_whole(messages: Sequence[Mapping[str, Any]]) -> None:
    """Every tool result follows its call; every call is followed by all of its results."""
    open_ids: set[str] = set()
    for message in messages:
        if message.get("role") == "tool":
            assert message["tool_call_id"] in open_ids, "tool result without its call"
            open_ids.discard(message["tool_call_id"])
            continue
        assert not open_ids, "a call lost its results"
        open_ids = {c["id"] for c in message.get("tool_calls") or ()}
    assert not open_ids


def test_units_group_exchanges_and_protect_the_current_turn() -> None:
    tail = pages_of(tool_conversation(6))[1:]
    units = plan_pinned(tail, pin_last_turns=2, counter=COUNTER)
    for unit in units:
        calls = unit.messages[0].get("tool_calls")
        if calls:
            assert [m["tool_call_id"] for m in unit.messages[1:]] == [c["id"] for c in calls]
    current = [u for u in units if u.age == 0]
    assert current[0].messages[0]["role"] == "user" and current[0].protected
    assert current[-1].protected and current[-1].messages[0].get("tool_calls")
    assert not any(u.protected for u in current[1:-1])
    assert sum(u.tokens for u in units) == sum(
        COUNTER.message(m, {c: n for p in tail for c, n in _names(p).items()})
        for u in units
        for m in u.messages
    )


def _names(page: Page) -> dict[str, str]:
    if page.role == "tool":
        return {page.tool_call_ids[0]: str(page.extra.get("function", ""))}
    return {}


def test_pinned_turn_count() -> None:
    tail = pages_of(
        [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "1"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "2"},
            {"role": "user", "content": "three"},
        ]
    )
    for n, first in [(0, "three"), (1, "three"), (2, "two"), (5, "one")]:
        units = plan_pinned(tail, pin_last_turns=n, counter=COUNTER)
        assert units[0].messages[0]["content"] == first


def test_fits_untouched_when_there_is_room() -> None:
    units = plan_pinned(pages_of(tool_conversation(4))[1:], pin_last_turns=3, counter=COUNTER)
    plan = fit_pinned(units, 100_000, COUNTER)
    assert plan.units == units and not plan.notes and not plan.dropped


def test_degrades_in_order_reduce_then_drop_old_turns() -> None:
    tail = pages_of(tool_conversation(14))[1:]
    units = plan_pinned(tail, pin_last_turns=3, counter=COUNTER)
    total = sum(u.tokens for u in units)
    plan = fit_pinned(units, total - 50, COUNTER)
    assert plan.tokens <= total - 50
    assert plan.notes[0].startswith("reduced tool output") and not plan.dropped
    tight = fit_pinned(units, total // 3, COUNTER)
    assert tight.dropped and any(n.startswith("dropped") for n in tight.notes)
    assert tight.tokens == sum(u.tokens for u in tight.units) <= total // 3
    reduced = [m for u in plan.units for m in u.messages if "reduced by vm-proxy" in str(m)]
    assert reduced and all('page_fault("msg_' in m["content"] for m in reduced)


@pytest.mark.parametrize("seed", range(40))
def test_random_budgets_never_split_an_exchange(seed: int) -> None:
    rng = random.Random(seed)
    tail = pages_of(tool_conversation(rng.randint(1, 16)))[1:]
    units = plan_pinned(tail, pin_last_turns=rng.randint(0, 4), counter=COUNTER)
    total = sum(u.tokens for u in units)
    budget = rng.randint(0, total + 100)
    plan = fit_pinned(units, budget, COUNTER)
    assert_exchanges_whole(plan.messages)
    assert plan.tokens == sum(u.tokens for u in plan.units)
    assert plan.tokens <= budget or plan.over_budget
    # The current user message and the open exchange are always there.
    protected = [u for u in units if u.protected]
    kept = {p.page_id for p in plan.pages}
    assert all(p.page_id in kept for u in protected for p in u.pages)
    dropped = {p.page_id for p in plan.dropped}
    assert kept.isdisjoint(dropped) and kept | dropped == {
        p.page_id for u in units for p in u.pages
    }


def test_a_question_larger_than_the_budget_is_clipped_to_fit() -> None:
    counter = counter_for_model("gpt-4o")
    article = " ".join(f"Sentence {n} of a very long article about tides." for n in range(3000))
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "Summarise this: " + article + " What is the gist?"}]
    pages = ingest_messages(messages, first_position=0, counters=Counters(), counter=counter,
                            segment_turns=100, clock=lambda: 0.0).pages
    units = plan_pinned([p for p in pages if p.message], pin_last_turns=2, counter=counter)
    plan = fit_pinned(units, 3000, counter)
    assert not plan.over_budget and plan.tokens <= 3000
    (question,) = [m for m in plan.messages if "Summarise" in str(m["content"])]
    text = str(question["content"])
    assert text.startswith("Summarise this: Sentence 0") and text.endswith("What is the gist?")
    assert 'page_fault("msg_2", 1)' in text and "left out by vm-proxy" in text
    assert sum(counter.message(m) for m in plan.messages) == plan.tokens


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_large_open_tool_results_are_cut_to_the_budget(parallel: int) -> None:
    """The open exchange alone is larger than the budget, even reduced (a 40 KB log's
    reduction is thousands of tokens): its results are clipped, each as far as needed, and
    the plan fits."""
    messages = agent_turn([log_lines(k, 900) for k in range(parallel)], parallel=parallel)
    units = plan_pinned(pages_of(messages), pin_last_turns=1, counter=COUNTER)
    plan = fit_pinned(units, 3000, COUNTER)
    assert not plan.over_budget and plan.tokens <= 3000, plan.notes
    assert sum(COUNTER.message(m, {f"call_{k}": "run" for k in range(parallel)})
               for m in plan.messages) == plan.tokens
    assert_exchanges_whole(plan.messages)
    assert plan.shortened == {p.page_id for p in pages_of(messages) if p.role == "tool"}


def test_an_open_result_too_large_alone_is_cut_before_steps_are_dropped() -> None:
    """An open tool result larger than the budget is cut anyway: the earlier steps of the
    turn are not dropped for the room that cut makes, and the result keeps its first and
    last lines, in the room they leave."""
    outputs = [log_lines(k, 12) for k in range(4)] + [log_lines(4, 900)]
    units = plan_pinned(pages_of(agent_turn(outputs)), pin_last_turns=1, counter=COUNTER)
    plan = fit_pinned(units, 3000, COUNTER)
    assert not plan.dropped and not plan.over_budget and plan.tokens <= 3000, plan.notes
    assert len(plan.messages) == 11 and "msg_10" in plan.shortened
    result = str(plan.messages[-1]["content"])
    assert result.startswith("step 4 line 0:") and result.endswith("line 899: compiling module"
                                                                   " m899 ok in 3 ms")
    assert 'page_fault("msg_10", 1)' in result
    assert plan.tokens > 0.9 * 3000  # the room is used, not left to a short reduction


def test_a_question_of_parts_larger_than_the_budget_is_clipped_to_fit() -> None:
    """A pasted report beside an image, as a vision app sends it: the report's text part
    is cut, the image kept."""
    report = " ".join(f"Line {n} of the quarterly report on tides." for n in range(3000))
    image = {"type": "image_url", "image_url": {"url": "https://example.com/chart.png"}}
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": [{"type": "text", "text": report}, image]}]
    units = plan_pinned(pages_of(messages), pin_last_turns=2, counter=COUNTER)
    plan = fit_pinned(units, 3000, COUNTER)
    assert not plan.over_budget and plan.tokens <= 3000, plan.notes
    parts = plan.messages[-1]["content"]
    assert isinstance(parts, list) and parts[1] == image
    assert parts[0]["text"].startswith("Line 0 of") and "left out by vm-proxy" in parts[0]["text"]
    assert sum(COUNTER.message(m) for m in plan.messages) == plan.tokens
