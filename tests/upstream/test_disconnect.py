"""`unless_disconnected`: the wait is raced against the client's disconnect, but only once
it has lasted `WATCH_AFTER_S`, and without a timer of its own."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from proxy.upstream import disconnect
from proxy.upstream.disconnect import ClientDisconnected, unless_disconnected
from tests.support.waiting import wait_until_cancelled


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disconnect, "WATCH_AFTER_S", 0.05)
    monkeypatch.setattr(disconnect, "SWEEP_EVERY_S", 0.02)


class Client:
    def __init__(self) -> None:
        self.receives = 0
        self.leave = asyncio.Event()

    async def receive(self) -> Message:
        self.receives += 1
        await self.leave.wait()
        return {"type": "http.disconnect"}


async def test_a_short_wait_never_listens_for_the_client() -> None:
    client = Client()
    assert await unless_disconnected(client.receive, asyncio.sleep(0, "answer")) == "answer"
    await asyncio.sleep(0.1)  # past the watch delay: nothing may start late either
    assert client.receives == 0


async def test_a_client_that_leaves_during_a_long_wait_cancels_it() -> None:
    client = Client()
    cancelled = asyncio.Event()

    async def upstream() -> str:
        await wait_until_cancelled(cancelled)

    async def leave_later() -> None:
        await asyncio.sleep(0.1)
        client.leave.set()

    leaving = asyncio.create_task(leave_later())
    with pytest.raises(ClientDisconnected):
        await unless_disconnected(client.receive, upstream())
    await leaving
    assert cancelled.is_set()
    assert client.receives == 1
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_concurrent_waits_share_one_timer_and_each_gets_its_watcher() -> None:
    clients = [Client() for _ in range(20)]
    gate = asyncio.Event()
    waits = [asyncio.create_task(unless_disconnected(c.receive, gate.wait())) for c in clients]
    await asyncio.sleep(0)
    assert disconnect._latest is not None
    assert len(disconnect._latest.waits) == 20
    await asyncio.sleep(0.15)
    assert [c.receives for c in clients] == [1] * 20
    gate.set()
    assert await asyncio.gather(*waits) == [True] * 20
    assert disconnect._latest.waits == set()
    await asyncio.sleep(0.05)
    assert disconnect._latest.timer is None  # nothing left to look over: no timer either
