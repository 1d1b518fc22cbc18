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

# Longer than a store's append takes unless something is wrong: a turn that waited this
# long is placed on what is known then (the general path rereads and forks as it must).
WAIT_AT_MOST_S = 1.0


class AppendsUnderWay:
    """`begin` and `end` around every short chat's append: two dictionary operations, no
    event made until a turn waits."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}  # appends under way, by conversation
        self._waiting: dict[tuple[str, str], asyncio.Event] = {}  # set when none is left

    def begin(self, tenant: str, conv_id: str) -> None:
        key = (tenant, conv_id)
        self._counts[key] = self._counts.get(key, 0) + 1

    def end(self, tenant: str, conv_id: str) -> None:
        key = (tenant, conv_id)
        left = self._counts[key] - 1
        if left:
            self._counts[key] = left
            return
        del self._counts[key]
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            waiting.set()

    def under_way(self, tenant: str, conv_id: str) -> bool:
        return (tenant, conv_id) in self._counts

    async def settled(self, tenant: str, conv_id: str) -> None:
        """Once no append to `conv_id` is under way (at most WAIT_AT_MOST_S)."""
        key = (tenant, conv_id)
        if key not in self._counts:
            return
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = asyncio.Event()
        try:
            await asyncio.wait_for(waiting.wait(), WAIT_AT_MOST_S)
        except TimeoutError:
            pass
