"""Fixtures of the fault-loop tests; the machinery is in harness.py and scripted.py."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.loop.short_chat import short_turn
from tests.loop.history import conversation


@pytest.fixture(scope="session")
def long_history() -> list[dict[str, Any]]:
    """240 turns (481 messages, about 21k tokens) with the locker fact at turn 5."""
    return conversation(240)


@pytest.fixture
def history(long_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy the test may change."""
    return [dict(message) for message in long_history]


@pytest.fixture
def decided(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many requests were decided by short_turn (the rest, taken by their bytes)."""
    calls: list[int] = []

    async def spied(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await short_turn(*args, **kwargs)

    monkeypatch.setattr("proxy.loop.handler.short_turn", spied)
    return calls
