"""proxy.loop.appends_under_way: a chat's next turn waits for its appends under way."""

from __future__ import annotations

import asyncio

import pytest

from proxy.loop import appends_under_way
from proxy.loop.appends_under_way import AppendsUnderWay


async def test_settled_waits_for_the_last_append_of_the_conversation() -> None:
    appends = AppendsUnderWay()
    await appends.settled("t", "c")  # none under way: at once
    first, second = appends.appending("t", "c"), appends.appending("t", "c")
    first.__enter__()
    second.__enter__()
    assert appends.under_way("t", "c") and not appends.under_way("t", "other")
    waiting = asyncio.create_task(appends.settled("t", "c"))
    first.__exit__(None, None, None)
    await asyncio.sleep(0)
    assert not waiting.done()  # one is still under way
    second.__exit__(None, None, None)
    await asyncio.wait_for(waiting, 1)
    assert not appends.under_way("t", "c")


async def test_an_append_that_fails_is_no_longer_under_way() -> None:
    appends = AppendsUnderWay()
    with pytest.raises(RuntimeError), appends.appending("t", "c"):
        raise RuntimeError("the store failed")
    assert not appends.under_way("t", "c")


async def test_a_turn_waits_at_most_so_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(appends_under_way, "WAIT_AT_MOST_S", 0.01)
    appends = AppendsUnderWay()
    with appends.appending("t", "c"):
        await asyncio.wait_for(appends.settled("t", "c"), 1)  # gives up, does not raise
        assert appends.under_way("t", "c")
