"""KeyedLocks: one lock per key, held for a block, gone once nobody holds or awaits it."""

from __future__ import annotations

import asyncio

import pytest

from proxy.store.locks import KeyedLocks


async def test_one_holder_per_key_and_none_left_after() -> None:
    locks = KeyedLocks()
    inside: list[str] = []
    order: list[str] = []

    async def hold(key: str, name: str) -> None:
        async with locks.hold(key):
            inside.append(name)
            assert [n for n in inside if n[0] == key] == [name]
            order.append(name)
            await asyncio.sleep(0.01)
            inside.remove(name)

    await asyncio.gather(hold("a", "a1"), hold("a", "a2"), hold("b", "b1"))
    assert order.index("b1") < order.index("a2")  # another key does not wait
    assert len(locks) == 0


async def test_a_waiter_cancelled_leaves_no_lock_behind() -> None:
    locks = KeyedLocks()
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("k"):
            held.set()
            await release.wait()

    first = asyncio.create_task(holder())
    await held.wait()

    async def waiter() -> None:
        async with locks.hold("k"):
            pytest.fail("the lock is held")

    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    release.set()
    await first
    assert len(locks) == 0


async def test_an_error_in_the_block_releases_the_lock() -> None:
    locks = KeyedLocks()
    with pytest.raises(ValueError):
        async with locks.hold("k"):
            raise ValueError("boom")
    assert len(locks) == 0
    async with asyncio.timeout(1):
        async with locks.hold("k"):
            pass
