"""Search by words and by meaning together: BM25 hits and vector hits fused by rank.

`Meaning` lives on the app while embeddings are on: the embedder, the vector index beside
the store, the background worker (proxy.loop.embedding_worker) and the counters. Each
request that needs memory makes a `TurnSearch`, which the turn's prefetch
(proxy.loop.early_search) and `search_pages` (proxy.loop.resolver) call instead of the
store's search: the query's vector is made once per text and turn, while BM25 runs, and
the fused hits are pages read through the store on the turn's path (ids the vector index
found that the path cannot see are simply absent). Without `Meaning` it is the store's
search alone.

Failure is never the client's: a query the embedder cannot embed within
`embeddings.query_timeout_s`, or a vector search that fails, leaves the turn with its
BM25 hits, a log line and `vm_embeddings_failures_total{stage="query"}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proxy.config import EmbeddingsSettings
from proxy.embeddings import Embedder, EmbeddingError
from proxy.embeddings.base import Auth
from proxy.metrics import Metrics
from proxy.store.base import PageStore, Path, SearchHit, StoreError
from proxy.vm.fusion import beside, fuse_rankings
from proxy.vm.pages import Modality
from proxy.vm.prefetch import neighbour_ids
from proxy.vm.query_parts import query_parts

if TYPE_CHECKING:
    from proxy.loop.embedding_worker import EmbeddingWorker
    from proxy.store.vectors import VectorIndex

log = logging.getLogger("vm_proxy.embeddings")

_CREDENTIALS = ("authorization", "api-key", "x-api-key")


@dataclass
class Meaning:
    settings: EmbeddingsSettings
    embedder: Embedder
    index: VectorIndex
    worker: EmbeddingWorker
    metrics: Metrics

    def failed(self, stage: str, error: BaseException) -> None:
        self.metrics.counter(
            "vm_embeddings_failures_total", {"stage": stage},
            help="Embedding or vector search failures (the turn searched by words alone)",
        ).inc()  # fmt: skip
        log.warning("embeddings: %s failed, searching by words alone: %s", stage,
                    str(error) or type(error).__name__)  # fmt: skip


def request_auth(headers: Sequence[tuple[str, str]]) -> Auth:
    """The request's credential headers, for an embedder that has no key of its own."""
    return tuple((n.lower(), v) for n, v in headers if n.lower() in _CREDENTIALS)


class TurnSearch:
    """One turn's searches on the store, fused with vector search when `meaning` is set."""

    def __init__(
        self, store: PageStore, meaning: Meaning | None, auth: Callable[[], Auth] = tuple
    ) -> None:
        """`auth()`: the request's credential headers, read only when something is embedded
        (a short chat never asks)."""
        self._store = store
        self._meaning = meaning
        self._read_auth = auth
        self._auth: Auth | None = None
        self._vectors: dict[str, asyncio.Future[Any]] = {}
        # Set by the prefetch's search: True when it ranked the hits' neighbouring messages
        # among the hits (the turn then places them by that rank, not beside every hit);
        # else, when it is a set, only these hits (BM25's) bring their neighbours along.
        self.ranked_neighbours = False
        self.word_hits: frozenset[str] | None = None

    @property
    def auth(self) -> Auth:
        if self._auth is None:
            self._auth = self._read_auth()
        return self._auth

    def warm(self, text: str) -> None:
        """Start embedding `text` (a query the turn will search by) now, and its clauses
        when they are searched too (`embeddings.clause_weight`)."""
        for query in [text, *self._clauses(text)]:
            self._warm(query)

    def _clauses(self, text: str) -> list[str]:
        meaning = self._meaning
        return query_parts(text) if meaning and meaning.settings.clause_weight > 0 else []

    def _warm(self, text: str) -> None:
        if self._meaning is not None and text and text not in self._vectors:
            future = asyncio.ensure_future(self._meaning.embedder.embed(
                [text], auth=self.auth, urgent=True
            ))
            # A failure is counted where the vector is awaited; one nobody awaits (a search
            # that timed out first, a turn that did not search) is nobody's to log.
            future.add_done_callback(_seen)
            self._vectors[text] = future

    async def search(
        self, path: Path, query: str, limit: int, *, text: str | None = None,
        modality: Modality | None = None, neighbours: bool = False,
    ) -> list[SearchHit]:  # fmt: skip
        """The best `limit` pages on `path` for BM25 `query` and, by meaning, for `text`
        (default: the query itself). `neighbours` (the prefetch's search): when fused with
        meaning and `embeddings.neighbour_weight` is set, the messages next to the BM25
        hits are a third ranking (proxy.vm.fusion.beside), and up to three times `limit`
        pages come back (a hit and its two neighbours each, the pool the limit was sized
        for); `ranked_neighbours` says it happened. Else, with `embeddings.neighbours_of`
        `word_hits`, `word_hits` names the fused hits BM25 found: only those bring the
        turns beside them (a turn found by meaning alone states the fact itself)."""
        meaning = self._meaning
        text = query if text is None else text
        if meaning is None or not text or modality not in (None, Modality.TEXT):
            return await self._store.search(path, query, limit=limit, modality=modality)
        self.warm(text)
        words, near = await asyncio.gather(
            self._store.search(path, query, limit=limit, modality=modality) if query else
            _no_hits(),
            self._nearest(meaning, path, text, limit),
        )  # fmt: skip
        settings = meaning.settings
        beside_words = neighbours and bool(near) and settings.neighbour_weight > 0
        if neighbours:
            # (Said once the rankings are in: the turn's own search says last.)
            self.ranked_neighbours = beside_words
            by_words = bool(near) and not beside_words and settings.neighbours_of == "word_hits"
            self.word_hits = frozenset(h.page.page_id for h in words) if by_words else None
        if not near:
            return words
        rankings = [[h.page.page_id for h in words], near]
        weights = [1.0, settings.fusion_weight]
        if beside_words:
            # Beside the hits by words only: a turn found by the question's words is often
            # the one that asked ("did you take up a sport?"), its answer next to it; a
            # turn found by meaning states the fact itself.
            rankings.append(beside([h.page for h in words], neighbour_ids))
            weights.append(settings.neighbour_weight)
            # The words now count twice, through their hits and through those hits'
            # neighbours: meaning keeps the balance `fusion_weight` sets against them.
            weights[1] *= 1.0 + settings.neighbour_weight
            limit *= 3
        fused = fuse_rankings(rankings, weights=weights, k=settings.fusion_k, limit=limit)
        found = {h.page.page_id: h.page for h in words}
        missing = [pid for pid, _ in fused if pid not in found]
        if missing:
            found.update(await self._store.get_pages(path, missing))
        return [SearchHit(found[pid], score) for pid, score in fused if pid in found]

    async def _nearest(self, meaning: Meaning, path: Path, text: str, limit: int) -> list[str]:
        """The pages nearest `text`; with `embeddings.clause_weight` set, fused with the
        pages nearest each of its clauses (proxy.vm.query_parts)."""
        settings = meaning.settings
        clauses = self._clauses(text)
        # (Every search awaited to its end: a clause's failure is not left unretrieved.)
        found = await asyncio.gather(
            *(self._ranked(meaning, path, t, limit) for t in [text, *clauses]),
            return_exceptions=True,
        )
        rankings: list[list[str]] = []
        for result in found:
            if isinstance(result, (EmbeddingError, StoreError, TimeoutError, ValueError)):
                meaning.failed("query", result)
                return []
            if isinstance(result, BaseException):
                raise result
            rankings.append(result)
        if not clauses:
            return rankings[0]
        weights = [1.0] + [settings.clause_weight] * len(clauses)
        fused = fuse_rankings(rankings, weights=weights, k=settings.fusion_k, limit=limit)
        return [pid for pid, _ in fused]

    async def _ranked(self, meaning: Meaning, path: Path, text: str, limit: int) -> list[str]:
        rows = await asyncio.wait_for(
            asyncio.shield(self._vectors[text]), meaning.settings.query_timeout_s
        )
        found = await meaning.index.search(path, meaning.embedder.name, rows[0], limit)
        return [pid for pid, _ in found]


def _seen(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _no_hits() -> list[SearchHit]:
    return []
