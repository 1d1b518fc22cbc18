"""Derived pages of positions another conversation owns are stored with it
(proxy.loop.derive.store_elsewhere), under its lock, unless the caller holds that lock
already: a turn that forks a branch and derives the branch's lean pages holds the branch's
lock while it does (proxy.loop.conversations, `_store_after`). Taken again, the lock waited
for itself forever: a review's random chats hung on it (an edit on a branch, long enough
to need memory)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from proxy.loop.derive import store_elsewhere
from proxy.store import open_store
from tests.store.conftest import make_page

T = "tenant-a"


async def test_pages_of_a_conversation_whose_lock_the_caller_holds_are_stored_under_it() -> None:
    store = await open_store("memory://")
    try:
        await store.create_conversation(T, "branch")
        lean = [make_page(n, f"page {n} about ferries") for n in range(3)]
        await store.append(T, "branch", lean, expected_version=0, new_length=3)
        derived = [dataclasses.replace(p, hint="derived") for p in lean]  # (ids kept)
        async with store.lock(T, "branch"):
            # Taken again, the lock waits for itself (what the caller must say it holds).
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(store_elsewhere(store, T, {"branch": derived}), 0.2)
            await asyncio.wait_for(
                store_elsewhere(store, T, {"branch": derived}, held="branch"), 5
            )
        conv = await store.get_conversation(T, "branch")
        assert conv is not None and (conv.length, conv.version) == (3, 2)  # appended there
    finally:
        await store.close()
