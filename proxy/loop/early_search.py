"""The turn's prefetch search, started as soon as the append of the question is issued.

That search needs only the latest user message and the path the request is stored on, and
both are known the moment the append storing the question is issued. Started then, it runs
in the store while the loop waits for the append, reads the conversation state and plans
the turn, instead of after all that with a round trip of its own. SQLite queues it on the
writer thread right behind the append (a read of a conversation being written waits for
that write), so it finds what it would have found issued later; a store that runs it
concurrently (PostgreSQL) may miss the pages of that one append, the question itself and
what ingest drew from it, which the turn keeps in view anyway.

Its result is used only when the turn searches the same path with the same query; any
other outcome (a retried append, a fork, memory not needed after all) drops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from proxy.store.base import PageStore, Path, SearchHit


class EarlySearch:
    def __init__(
        self,
        store: PageStore,
        query: Callable[[], str],
        limit: Callable[[Mapping[str, Any]], int],
        wanted: Callable[[Mapping[str, Any]], bool],
        *,
        search: Callable[[Path, str, int], Awaitable[list[SearchHit]]] | None = None,
    ) -> None:
        """`query()`: the turn's search query (made only when needed); `limit(state)`: how
        many hits the turn will ask, with the conversation state being stored;
        `wanted(state)`: whether the turn will search at all (it does not when memory is
        not needed); `search(path, query, limit)`: the search to run (default: the store's
        BM25; with embeddings on, proxy.loop.meaning's fused search)."""
        self._search = search or (lambda path, query, limit: store.search(path, query, limit=limit))
        self._make_query = query
        self.query: str | None = None
        self._limit = limit
        self.limit = 0
        self._wanted = wanted
        self._path: Path | None = None
        self._task: asyncio.Future[list[SearchHit]] | None = None

    def appending(self, path: Path, state: Mapping[str, Any]) -> None:
        """The append of the request's messages onto `path` (cut at the request's end) is
        being issued, storing `state`: start the search. A retried append starts it again."""
        self.cancel()
        if not self._wanted(state):
            return
        self.limit = self._limit(state)
        if self.limit <= 0:
            return
        if self.query is None:
            self.query = self._make_query()
        if self.query:
            self._path = path
            self._task = asyncio.ensure_future(self._search(path, self.query, self.limit))

    async def hits(self, path: Path, query: str, limit: int) -> list[SearchHit]:
        """The turn's search: the early one when it ran with these arguments."""
        task, self._task = self._task, None
        if task is not None:
            if (path, query, limit) == (self._path, self.query, self.limit):
                return await task
            _drop(task)
        return await self._search(path, query, limit) if query else []

    def cancel(self) -> None:
        """Drop a search not taken (a no-op once `hits` has taken it)."""
        task, self._task = self._task, None
        if task is not None:
            _drop(task)


def _drop(task: asyncio.Future[list[SearchHit]]) -> None:
    # Cancelling also marks an error the search may already have ended with as seen: it is
    # nobody's, and is not logged.
    task.cancel()
