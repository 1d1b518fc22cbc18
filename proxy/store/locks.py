"""One asyncio.Lock per key, created on demand and dropped when nobody holds or awaits it."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from types import TracebackType


class KeyedLocks:
    def __init__(self) -> None:
        # key -> (lock, number of tasks holding or waiting for it)
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    def hold(self, key: Hashable) -> _Holding:
        """`async with locks.hold(key):` the key's lock, held for the block."""
        return _Holding(self._locks, key)


class _Holding:
    """A plain class, not an @asynccontextmanager: every stored turn takes a lock or two,
    and the generator machinery cost several times what the lock itself does."""

    __slots__ = ("_locks", "_key", "_lock")

    def __init__(self, locks: dict[Hashable, tuple[asyncio.Lock, int]], key: Hashable) -> None:
        self._locks = locks
        self._key = key

    async def __aenter__(self) -> None:
        lock, users = self._locks.get(self._key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[self._key] = (lock, users + 1)
        self._lock = lock
        try:
            await lock.acquire()
        except BaseException:
            self._release_use()
            raise

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._lock.release()
        self._release_use()

    def _release_use(self) -> None:
        lock, users = self._locks[self._key]
        if users == 1:
            del self._locks[self._key]
        else:
            self._locks[self._key] = (lock, users - 1)
