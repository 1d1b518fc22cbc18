"""Whole upstream request bodies for a few conversations, byte for byte.

The expected bodies live in tests/vm/golden/*.json. After an intended change, regenerate
them with `UPDATE_GOLDEN=1 python -m pytest tests/vm/test_golden.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from proxy.config import VMSettings
from tests.vm import conversations
from tests.vm.helpers import Memory, dumps

GOLDEN = Path(__file__).resolve().parent / "golden"


def _case(name: str) -> tuple[VMSettings, dict[str, Any], str]:
    if name == "short":
        return (
            VMSettings(context_budget=2000, activate_above=0),
            {
                "model": "gpt-4o",
                "messages": conversations.short_conversation(),
                "temperature": 0.3,
            },
            "strict",
        )
    if name == "long":
        return (
            VMSettings(context_budget=3000, activate_above=0, segment_turns=6),
            {
                "model": "gpt-4o-2024-08-06",
                "messages": conversations.long_conversation(40),
                "max_tokens": 400,
                "user": "team-7",
            },
            "strict",
        )
    if name == "tools":
        return (
            VMSettings(context_budget=3000, activate_above=0, pin_last_turns=1),
            {
                "model": "gpt-4o-mini",
                "messages": conversations.tool_conversation(14),
                "tools": conversations.CLIENT_TOOLS,
                "parallel_tool_calls": True,
                "stream": True,
            },
            "relaxed",
        )
    if name == "images":
        return (
            VMSettings(context_budget=4000, activate_above=0, developer_role="system"),
            {
                "model": "gpt-4.1",
                "messages": conversations.image_conversation(),
                "max_completion_tokens": 9000,
            },
            "passive",
        )
    raise AssertionError(name)


CASES = ["short", "long", "tools", "images"]


@pytest.mark.parametrize("name", CASES)
def test_golden_body(name: str) -> None:
    settings, body, mode = _case(name)
    memory = Memory(settings, body["model"])
    packed = memory.pack(body, mode=mode)
    text = dumps(packed.body)
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"missing {path}; run with UPDATE_GOLDEN=1"
    assert text == path.read_text()
    # Always within the budget, as tiktoken counts the body we actually send.
    exact = memory.counter.request(packed.body)
    assert exact + packed.reply_tokens <= settings.context_budget
    assert packed.prompt_tokens >= exact
    assert not packed.over_budget


@pytest.mark.parametrize("name", CASES)
def test_golden_body_is_deterministic(name: str) -> None:
    settings, body, mode = _case(name)
    first = Memory(settings, body["model"]).pack(body, mode=mode)
    second = Memory(settings, body["model"]).pack(body, mode=mode)
    assert dumps(first.body) == dumps(second.body)
    assert first.mutations == second.mutations
