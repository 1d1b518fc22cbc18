"""The append-only window: consecutive prompts of one conversation share a long exact prefix,
break it only at compactions, and stay within the budget."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from proxy.config import VMSettings
from proxy.vm.frame import Frame, block_position
from proxy.vm.packer import PackedRequest
from tests.vm import conversations
from tests.vm.helpers import Memory, dumps
from tests.vm.test_pinning import assert_exchanges_whole


def _turns(messages: list[dict[str, Any]], first: int) -> list[list[dict[str, Any]]]:
    """Prefixes of `messages` ending at each user message from the `first`-th on: what a
    client sends turn after turn."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    return [messages[: i + 1] for i in users[first:]]


def _feed(memory: Memory, requests: list[list[dict[str, Any]]], **extra: Any) -> list[Any]:
    return [memory.pack({"model": "gpt-4o", "messages": m, **extra}) for m in requests]


def _is_block(message: dict[str, Any]) -> bool:
    return message["role"] == "developer" and "<VM:" in str(message.get("content"))


def _without_block(packed: PackedRequest) -> list[dict[str, Any]]:
    return [m for m in packed.body["messages"][1:] if not _is_block(m)]


def _serialized(packed: PackedRequest) -> str:
    return json.dumps(packed.body.get("tools") or []) + json.dumps(packed.body["messages"])


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


SETTINGS = VMSettings(context_budget=4000, activate_above=0, segment_turns=6)


def test_between_compactions_the_previous_prompt_is_kept_up_to_its_block() -> None:
    memory = Memory(SETTINGS, frames=True)
    packs = _feed(memory, _turns(conversations.long_conversation(70), 20))
    reused = 0
    for before, after in zip(packs, packs[1:], strict=False):
        if after.compacted:
            continue
        reused += 1
        assert after.body["messages"][0] == before.body["messages"][0]  # frozen, same bytes
        kept = before.body["messages"][1:]
        cut = next((i for i, m in enumerate(kept) if _is_block(m)), len(kept))
        assert after.body["messages"][1 : 1 + cut] == kept[:cut]
        # Everything the client sent since the frame's start, verbatim.
        assert _without_block(after)[: len(kept) - (len(kept) > cut)] == [
            m for m in kept if not _is_block(m)
        ]
    compactions = sum(p.compacted for p in packs)
    assert reused >= 3 * compactions, (reused, compactions)
    assert compactions >= 2  # the window does not grow without bound


def test_prefix_share_is_high_between_compactions() -> None:
    memory = Memory(SETTINGS, frames=True)
    packs = _feed(memory, _turns(conversations.long_conversation(60), 20))
    shares = [
        _common(_serialized(a), _serialized(b)) / len(_serialized(b))
        for a, b in zip(packs, packs[1:], strict=False)
        if not b.compacted
    ]
    # The turn's block (most of the prompt: the pages recalled for the question) changes
    # with every question by design; the tools, the leading message and the window before
    # it are kept, and the window grows until it restarts.
    assert shares and min(shares) > 0.2 and sum(shares) / len(shares) > 0.3


def test_without_a_frame_every_pack_compacts() -> None:
    packs = _feed(Memory(SETTINGS), _turns(conversations.long_conversation(30), 20))
    assert all(p.compacted for p in packs)


@pytest.mark.parametrize("seed", range(6))
def test_every_turn_within_budget_as_tiktoken_counts_it(seed: int) -> None:
    rng = random.Random(seed)
    budget = rng.choice([1500, 2500, 4000, 8000])
    settings = VMSettings(
        context_budget=budget,
        activate_above=0,
        pin_last_turns=rng.randint(1, 3),
        segment_turns=rng.randint(3, 8),
        reply_reserve_tokens=rng.randint(0, 600),
    )
    memory = Memory(settings, frames=True)
    if seed % 2:
        requests = _turns(conversations.long_conversation(45), 10)
        extra: dict[str, Any] = {}
    else:
        requests = _turns(conversations.tool_conversation(14), 2)
        extra = {"tools": conversations.CLIENT_TOOLS}
    for packed in _feed(memory, requests, **extra):
        exact = memory.counter.request(packed.body)
        assert exact <= packed.prompt_tokens
        assert exact + packed.reply_tokens <= budget or packed.over_budget
        assert_exchanges_whole(packed.body["messages"][1:])


def test_same_state_and_request_give_the_same_bytes() -> None:
    requests = _turns(conversations.long_conversation(40), 15)
    first = _feed(Memory(SETTINGS, frames=True), requests)
    second = _feed(Memory(SETTINGS, frames=True), requests)
    assert [dumps(p.body) for p in first] == [dumps(p.body) for p in second]
    assert [p.frame for p in first] == [p.frame for p in second]


def test_compaction_restarts_the_window_at_the_pinned_turns() -> None:
    settings = VMSettings(context_budget=3000, activate_above=0, pin_last_turns=2)
    memory = Memory(settings, frames=True)
    packs = _feed(memory, _turns(conversations.long_conversation(50), 10))
    later = [p for p in packs[1:] if p.compacted]
    assert later
    for packed in later:
        assert packed.frame is not None
        users = [m for m in _without_block(packed) if m["role"] == "user"]
        assert len(users) == 2  # the last two turns, nothing older
        assert packed.pinned_ids[0] == f"msg_{packed.frame.start}"


def test_block_sits_right_after_the_latest_user_message() -> None:
    memory = Memory(SETTINGS, frames=True)
    packed = _feed(memory, _turns(conversations.long_conversation(30), 29))[-1]
    messages = packed.body["messages"]
    blocks = [i for i, m in enumerate(messages) if i and _is_block(m)]
    assert blocks == [block_position(messages[: blocks[0]])]
    assert messages[blocks[0] - 1]["role"] == "user"
    assert "<VM:CONTEXT>" in messages[blocks[0]]["content"]
    # Each section tag once per VM message: nothing in the history can forge one.
    for index in (0, blocks[0]):
        assert messages[index]["content"].count("<VM:MANIFEST_JSON>") == 1


def test_a_page_faulted_last_turn_comes_back_in_the_block() -> None:
    memory = Memory(SETTINGS, frames=True)
    requests = _turns(conversations.long_conversation(40), 30)
    first = _feed(memory, requests[:1])[0]
    unseen = next(f"msg_{n}" for n in range(3, 40, 2) if f"msg_{n}" not in first.mapped)
    memory.table.note_faulted(unseen, 0, memory.counters.turns)
    second = _feed(memory, requests[1:2])[0]
    assert not second.compacted and second.mapped.get(unseen) == 0


def test_a_changed_mode_or_unreadable_frame_compacts() -> None:
    memory = Memory(SETTINGS, frames=True)
    requests = _turns(conversations.long_conversation(40), 30)
    _feed(memory, requests[:1])
    assert memory.frame is not None
    again = Frame.from_dict(memory.frame.to_dict())
    assert again == memory.frame
    assert Frame.from_dict({**memory.frame.to_dict(), "v": 99}) is None
    assert Frame.from_dict({"v": 1, "start": "x"}) is None
    assert Frame.from_dict(None) is None
    relaxed = memory.pack({"model": "gpt-4o", "messages": requests[1]}, mode="relaxed")
    assert relaxed.compacted
