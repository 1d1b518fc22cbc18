"""What the fault loop reads of the app it runs in (proxy.http.state.AppState provides it)."""

from __future__ import annotations

from typing import Protocol

from proxy.config import Settings
from proxy.loop.appends_under_way import AppendsUnderWay
from proxy.loop.deliveries import Deliveries
from proxy.loop.meaning import Meaning
from proxy.loop.prefix_cache import PrefixCache
from proxy.loop.repeats import Repeats
from proxy.loop.summarizer import Summarizer
from proxy.loop.tip_claims import TipClaims
from proxy.metrics import Metrics
from proxy.store import PageStore
from proxy.store.locks import KeyedLocks
from proxy.upstream.client import Upstream


class AppServices(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def store(self) -> PageStore: ...

    @property
    def upstream(self) -> Upstream: ...

    @property
    def session_locks(self) -> KeyedLocks:
        """One turn of an X-VM-Session at a time in this process (proxy.loop.handler)."""

    @property
    def prefix_cache(self) -> PrefixCache:
        """The last conversation rows and prefixes this process saw (loop.prefix_cache)."""

    @property
    def repeats(self) -> Repeats:
        """Short requests sent again, decided once (proxy.loop.repeats)."""

    @property
    def appends(self) -> AppendsUnderWay:
        """Short chats' appends not returned yet (proxy.loop.appends_under_way)."""

    @property
    def deliveries(self) -> Deliveries:
        """When each session's latest response reached its client (loop.deliveries)."""

    @property
    def tips(self) -> TipClaims:
        """The tips short chats' turns in flight will store on (proxy.loop.tip_claims)."""

    @property
    def summarizer(self) -> Summarizer | None:
        """The background summarizer (proxy.loop.summarizer); None with `vm.summarizer`
        off."""

    @property
    def meaning(self) -> Meaning | None:
        """Embeddings, when on: vector search beside BM25 (proxy.loop.meaning)."""
