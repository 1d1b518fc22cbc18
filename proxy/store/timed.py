"""`TimedStore`: a store's calls timed into the metrics, per call name
(`vm_store_seconds{call="search"}`): what the backend costs a turn, below the page cache.

It wraps any backend and forwards every attribute; the protocol's coroutine methods are
timed from the call to the answer (a read batched with others by the SQLite store waits
for the batch: that wait is part of its cost).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from proxy.metrics import Metrics

# Seconds: from a cached SQLite read (tens of microseconds) to a slow remote write.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 10.0)
TIMED = frozenset({
    "ping", "lookup_hashes", "get_conversation", "conversation_version",
    "create_conversation", "open_root", "path", "append", "update_state", "get_pages",
    "pages_in_range",
    "search", "put_pages", "mutations", "mutations_between", "resolve_session", "bind_session",
    "find_response", "remember_response", "gc", "list_tenants", "list_conversations",
    "conversation_tree",
})  # fmt: skip


class TimedStore:
    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if name not in TIMED:
            return value
        timed = _timed(value, self._metrics.histogram(
            "vm_store_seconds", {"call": name}, buckets=BUCKETS,
            help="Time of one call of the page store's backend (below the page cache)"))
        setattr(self, name, timed)  # made once per name
        return timed


def _timed(call: Callable[..., Awaitable[Any]], histogram: Any) -> Callable[..., Awaitable[Any]]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - started)

    return timed
