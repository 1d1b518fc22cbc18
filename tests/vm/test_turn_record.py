"""The turn record: it renders the prompt the packer sent, from the pages alone, and its
digests are those of the bytes the upstream client sends."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config import VMSettings
from proxy.vm.packer import PackedRequest
from proxy.vm.sent import differing, digest_body, parse_parts, prefix_share
from proxy.vm.turn_record import (
    CLIPPED,
    REDUCED,
    RecordError,
    TurnRecord,
    decode_ids,
    encode_ids,
    rebuild_messages,
)
from tests.vm import conversations
from tests.vm.helpers import Memory
from tests.vm.test_golden import CASES, _case


def rebuilt(packed: PackedRequest, memory: Memory) -> list[dict[str, Any]]:
    """The record as the log keeps it, read back and rendered from the pages."""
    stored = TurnRecord.from_detail(packed.record.turn, packed.record.to_detail())
    return rebuild_messages(stored, memory.pages, packed.record.prefix)


def assert_rebuilds(packed: PackedRequest, memory: Memory) -> None:
    messages = rebuilt(packed, memory)
    assert orjson.dumps(messages) == orjson.dumps(packed.body["messages"])


@pytest.mark.parametrize("name", CASES)
def test_golden_prompts_rebuild_byte_for_byte(name: str) -> None:
    settings_, body, mode = _case(name)
    memory = Memory(settings_, body["model"])
    packed = memory.pack(body, mode=mode)
    assert_rebuilds(packed, memory)


@pytest.mark.parametrize("turn_note", ["message", "leading"])
def test_every_turn_of_a_growing_conversation_rebuilds(turn_note: str) -> None:
    settings_ = VMSettings(context_budget=2500, activate_above=0, segment_turns=4,
                           turn_note=turn_note)
    memory = Memory(settings_, frames=True)
    messages = conversations.long_conversation(12)
    reused = 0
    for turn in range(12):
        packed = memory.pack({"model": "gpt-4o", "messages": messages})
        assert_rebuilds(packed, memory)
        assert packed.record.has_block
        reused += not packed.compacted
        messages = [*messages, {"role": "assistant", "content": f"Answer {turn}."},
                    {"role": "user", "content": f"And the sourdough starter, part {turn}?"}]
    assert reused  # frames were reused, not only compactions


def test_reduced_tool_results_are_marked_and_rebuilt() -> None:
    settings_ = VMSettings(context_budget=1400, activate_above=0, pin_last_turns=3)
    memory = Memory(settings_, "gpt-4o-mini")
    body = {"model": "gpt-4o-mini", "messages": conversations.tool_conversation(6),
            "tools": conversations.CLIENT_TOOLS}
    packed = memory.pack(body, mode="relaxed")
    assert any(s.form == REDUCED for s in packed.record.window), packed.notes
    assert_rebuilds(packed, memory)


def test_a_clipped_message_is_kept_in_the_record() -> None:
    settings_ = VMSettings(context_budget=1500, activate_above=0)
    memory = Memory(settings_)
    huge = " ".join(f"word{i} of a very long paste." for i in range(900))
    messages = [*conversations.short_conversation(), {"role": "user", "content": huge}]
    packed = memory.pack({"model": "gpt-4o", "messages": messages})
    assert [s.form for s in packed.record.window if s.form] == [CLIPPED], packed.notes
    assert_rebuilds(packed, memory)


def test_a_missing_page_is_named() -> None:
    settings_, body, mode = _case("long")
    memory = Memory(settings_, body["model"])
    packed = memory.pack(body, mode=mode)
    gone = packed.record.lines[0].page_id
    del memory.pages[gone]
    with pytest.raises(RecordError, match=gone):
        rebuilt(packed, memory)


def test_the_record_is_small() -> None:
    settings_, body, mode = _case("long")
    packed = Memory(settings_, body["model"]).pack(body, mode=mode)
    detail = packed.record.to_detail()
    assert len(packed.record.lines) >= 10
    assert len(detail) < 1200, detail
    assert "msg_" in detail and packed.record.prefix not in detail


def test_a_foreign_record_is_refused() -> None:
    with pytest.raises(RecordError):
        TurnRecord.from_detail(3, '{"v": 99}')
    with pytest.raises(RecordError):
        TurnRecord.from_detail(3, "not json")


_ids = st.lists(
    st.tuples(
        st.sampled_from(["msg", "seg", "claim", "img"]),
        st.integers(0, 60),
        st.sampled_from(["", "r", "c", "1", "1:80", "2"]),
    ),
    max_size=40,
)


@given(_ids)
def test_id_runs_round_trip(entries: list[tuple[str, int, str]]) -> None:
    pairs = [(f"{prefix}_{n}", suffix) for prefix, n, suffix in entries]
    assert decode_ids(encode_ids(pairs)) == pairs


def test_id_runs_are_short() -> None:
    assert encode_ids((f"msg_{n}", "") for n in range(40, 58)) == "msg_40-57"
    assert encode_ids([("msg_3", ""), ("msg_4", "r"), ("msg_5", "r")]) == "msg_3,msg_4-5:r"


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.text(max_size=6), _json, max_size=5),
    st.lists(st.dictionaries(st.text(max_size=5), _json, max_size=3), max_size=5),
    st.integers(0, 5),
)
def test_the_digest_is_that_of_the_bytes_sent(
    fields: dict[str, Any], messages: list[dict[str, Any]], at: int
) -> None:
    items = list(fields.items())
    items.insert(min(at, len(items)), ("messages", messages))
    body = dict(items)
    sent = digest_body(body, "messages", "rules")
    assert sent.digest == hashlib.sha256(orjson.dumps(body)).hexdigest()
    if body["messages"] is messages:
        assert len(sent.parts) == len(messages)
        assert parse_parts(sent.parts_hex) == sent.parts
        # The static part holds every other field, the list's place kept.
        assert list(sent.static["fields"]) == list(body)
        assert sent.static["fields"]["messages"] is None


def test_the_static_hash_follows_fields_and_rules_not_messages() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": []}
    same = digest_body({**body, "messages": []}, "messages", "rules")
    assert digest_body(body, "messages", "rules").static_hash == same.static_hash
    assert digest_body(body, "messages", "other").static_hash != same.static_hash
    assert digest_body({**body, "tools": [1]}, "messages", "rules").static_hash != (
        same.static_hash
    )


def test_prefix_share_counts_the_repeated_leading_messages() -> None:
    assert prefix_share([1, 2, 3], [10, 30, 60], [1, 2, 9]) == pytest.approx(0.4)
    assert prefix_share([1, 2, 3], [10, 30, 60], [5]) == 0.0
    assert prefix_share([], [], [1]) == 0.0
    assert differing([1, 2, 3], [1, 5]) == [1, 2]


_log = conversations.log_lines


@pytest.mark.parametrize(("outputs", "parallel", "budget", "forms"), [
    ([_log(k, 12) for k in range(4)] + [_log(4, 900)], 1, 3000, {REDUCED, CLIPPED}),
    ([_log(k, 900) for k in range(3)], 3, 4000, {CLIPPED}),
])
def test_an_agent_turn_cut_to_fit_is_rebuilt(
    outputs: list[str], parallel: int, budget: int, forms: set[str]
) -> None:
    memory = Memory(VMSettings(context_budget=budget, activate_above=0))
    tools = [{"type": "function", "function": {
        "name": "run", "parameters": {"type": "object", "properties": {}}}}]
    messages = [{"role": "system", "content": "A coding agent."},
                *conversations.agent_turn(outputs, parallel)]
    packed = memory.pack({"model": "gpt-4o", "messages": messages, "tools": tools})
    assert not packed.over_budget
    assert {s.form for s in packed.record.window if s.form} == forms, packed.notes
    assert_rebuilds(packed, memory)


def test_a_question_of_parts_cut_to_fit_is_rebuilt() -> None:
    report = " ".join(f"Line {n} of the quarterly report on tides." for n in range(3000))
    image = {"type": "image_url", "image_url": {"url": "https://example.com/chart.png"}}
    memory = Memory(VMSettings(context_budget=4000, activate_above=0))
    messages = [*conversations.short_conversation(),
                {"role": "user", "content": [{"type": "text", "text": report}, image]}]
    packed = memory.pack({"model": "gpt-4o", "messages": messages})
    assert [s.form for s in packed.record.window if s.form] == [CLIPPED], packed.notes
    assert_rebuilds(packed, memory)
