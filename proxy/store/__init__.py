"""Page stores, chosen by the scheme of `store.url`.

The app's lifespan opens the store once and closes it on shutdown:

    store = await open_store(settings.store.url)   # connected, schema created or migrated
    try:
        ...
    finally:
        await store.close()

`open_store` is the only way in: it returns a ready store (there is no separate `start`).
Backends are named by scheme in `BACKENDS` (`"scheme": "module:Class"`, each class having
`async classmethod open(url, *, clock)`), so an optional driver is imported only when its
scheme is used. `cache_pages > 0` puts a `CachedStore` in front (pages, paths and
version-checked conversation rows kept in process; see proxy.store.cached); `metrics`
times the backend's calls (proxy.store.timed).

    memory://                         dicts in this process, lost on exit (tests)
    sqlite:///relative/path.db        a file, created with its directory on first run
    sqlite:////absolute/path.db       (?synchronous=full to survive power loss too)
    postgresql://user@host:5432/db    many replicas on one database (?schema=name)
"""

from __future__ import annotations

import importlib
import time
from typing import Protocol, cast
from urllib.parse import urlsplit

from proxy.metrics import Metrics
from proxy.store.base import PageStore, StoreError
from proxy.store.cached import CachedStore
from proxy.store.timed import TimedStore
from proxy.vm.mutations import Clock

__all__ = ["BACKENDS", "CachedStore", "PageStore", "StoreError", "open_store"]

BACKENDS: dict[str, str] = {
    "memory": "proxy.store.memory:MemoryStore",
    "sqlite": "proxy.store.sqlite:SQLiteStore",
    "postgresql": "proxy.store.postgres:PostgresStore",
    "postgres": "proxy.store.postgres:PostgresStore",
}


class _Backend(Protocol):
    async def open(self, url: str, *, clock: Clock | None = None) -> PageStore:
        ...


async def open_store(
    url: str, *, cache_pages: int = 0, clock: Clock | None = None, metrics: Metrics | None = None
) -> PageStore:
    """Open (connect, create or migrate) the store that `url` names; with `metrics`, its
    backend's calls are timed there (proxy.store.timed)."""
    scheme = urlsplit(url).scheme.lower()
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(f"{name}://" for name in BACKENDS)
        raise ValueError(f"unknown store URL scheme {scheme!r} in {url!r}; use one of {known}")
    module_name, _, class_name = target.partition(":")
    backend = cast(_Backend, getattr(importlib.import_module(module_name), class_name))
    store = await backend.open(url, clock=clock or time.time)
    if metrics is not None:
        store = cast(PageStore, TimedStore(store, metrics))
    return CachedStore(store, max_pages=cache_pages) if cache_pages > 0 else store
