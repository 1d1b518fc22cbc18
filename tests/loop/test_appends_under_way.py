"""proxy.loop.appends_under_way: a chat's next turn waits for its appends under way."""

from __future__ import annotations

import asyncio

import pytest

from proxy.loop import appends_under_way
from proxy.loop.appends_under_way import AppendsUnderWay


async def test_settled_waits_for_the_last_append_of_the_conversation() -> None:
    appends = AppendsUnderWay()
    await appends.settled("t", "c")  # none under way: at once
    appends.begin("t", "c")
    appends.begin("t", "c")
    assert appends.under_way("t", "c") and not appends.under_way("t", "other")
    waiting = [asyncio.create_task(appends.settled("t", "c")) for _ in range(2)]
    appends.end("t", "c")
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiting)  # one is still under way
    appends.end("t", "c")
    await asyncio.wait_for(asyncio.gather(*waiting), 1)
    assert not appends.under_way("t", "c")
    appends.begin("t", "c")  # a later append: waited for afresh
    again = asyncio.create_task(appends.settled("t", "c"))
    await asyncio.sleep(0)
    assert not again.done()
    appends.end("t", "c")
    await asyncio.wait_for(again, 1)


async def test_a_turn_waits_at_most_so_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(appends_under_way, "WAIT_AT_MOST_S", 0.01)
    appends = AppendsUnderWay()
    appends.begin("t", "c")
    await asyncio.wait_for(appends.settled("t", "c"), 1)  # gives up, does not raise
    assert appends.under_way("t", "c")
