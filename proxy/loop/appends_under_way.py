"""Short chats' appends not returned yet, by conversation (proxy.loop.short_chat).

A short chat's turn is stored after its answer is sent, and the prefix cache learns the
turn once its append returns. A client that sends the next turn right away (an agent's
loop, a load generator) can get there first: the next turn is then placed on the row before
its predecessor's append, its own append finds the conversation changed, and it is placed
anew the general way (more reads, a lock, a second ingest). That window is one write to the
store: nothing on SQLite and the memory store, whose appends return at once (SQLite queues
them for its writer), but a round trip on PostgreSQL, where at 64 clients sending chats
back to back nearly half the turns went the general way. So a turn whose history continues
a conversation with an append under way waits for it first, then looks again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

# Longer than a store's append takes unless something is wrong: a turn that waited this
# long is placed on what is known then (the general path rereads and forks as it must).
WAIT_AT_MOST_S = 1.0


class AppendsUnderWay:
    def __init__(self) -> None:
        # (tenant, conv_id) -> the appends under way and the event set when none is left.
        self._under_way: dict[tuple[str, str], tuple[int, asyncio.Event]] = {}

    @contextmanager
    def appending(self, tenant: str, conv_id: str) -> Iterator[None]:
        """Around an append to `conv_id` and what the prefix cache learns of it."""
        key = (tenant, conv_id)
        count, done = self._under_way.get(key) or (0, asyncio.Event())
        self._under_way[key] = (count + 1, done)
        try:
            yield
        finally:
            count, done = self._under_way[key]
            if count == 1:
                del self._under_way[key]
                done.set()
            else:
                self._under_way[key] = (count - 1, done)

    def under_way(self, tenant: str, conv_id: str) -> bool:
        return (tenant, conv_id) in self._under_way

    async def settled(self, tenant: str, conv_id: str) -> None:
        """Once no append to `conv_id` is under way (at most WAIT_AT_MOST_S)."""
        entry = self._under_way.get((tenant, conv_id))
        if entry is not None:
            try:
                await asyncio.wait_for(entry[1].wait(), WAIT_AT_MOST_S)
            except TimeoutError:
                pass
