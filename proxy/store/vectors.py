"""Page vectors beside the pages: stored by each backend, searched here, exactly.

A vector belongs to a page of a conversation (tenant, conv_id, anchor, page_id; a page
embedded as several passages has a row per passage, `page_id#n`) and to a vector space
(the embedder's name: vectors of two models are never compared). Each conversation also
has a mark per space, `done_below`: its pages at anchors below it have been embedded
(pages are embedded in anchor order). The mark is what the background worker resumes from
after a restart, and what a cache checks before trusting the vectors it holds.

Search is exact: the conversation's vectors are held in process as one float32 matrix per
conversation (loaded once, then only the rows past the cached mark; least recently used
dropped past `cache_mb`), and a query is one matrix product over the rows on the path's
spans. At 10k pages of 384 dimensions that is ~4 M multiply-adds, well under a millisecond
(benchmarks/vector_search.py), so no approximate index is needed at a conversation's scale.

A vector query is scoped like every page read: only the spans of the asked path, of its
tenant, are scored, and the ids found are read back through the page store, which scopes
them again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from proxy.store.base import Path
from proxy.vm.passages import page_of

# (row id: the page id, or `page_id#n` for its n-th passage; anchor; float32 vector bytes)
VectorRow = tuple[str, int, bytes]
# Rows read per result wanted before deduplicating passages (more when too few pages).
PASSAGES_PER_PAGE = 3
# Past this many rows (about a millisecond of product) a search runs on a thread, not on
# the event loop.
OFF_LOOP_ROWS = 4000


class VectorBackend(Protocol):
    async def marks(self, tenant: str, conv_ids: Sequence[str], space: str) -> dict[str, int]:
        """`done_below` of each conversation that has a mark in `space`."""

    async def load(
        self, tenant: str, conv_id: str, space: str, from_anchor: int
    ) -> list[VectorRow]:
        """The conversation's vectors at anchors `>= from_anchor`, in anchor order."""

    async def save(
        self, tenant: str, conv_id: str, space: str, rows: Sequence[VectorRow], done_below: int
    ) -> None:
        """Store `rows` and move the mark to `done_below`, atomically."""

    async def pending(self, space: str, limit: int) -> list[tuple[str, str]]:
        """(tenant, conv_id) of marked conversations longer than their mark."""


@dataclass(slots=True)
class _Matrix:
    done_below: int
    ids: list[str]
    anchors: npt.NDArray[np.int64]
    rows: npt.NDArray[np.float32]

    @property
    def nbytes(self) -> int:
        return int(self.rows.nbytes + self.anchors.nbytes) + 64 * len(self.ids)

    def extend(self, found: Sequence[VectorRow], done_below: int) -> None:
        self.done_below = done_below
        if not found:
            return
        added = np.stack([np.frombuffer(blob, dtype=np.float32) for _, _, blob in found])
        if self.rows.size and added.shape[1] != self.rows.shape[1]:
            raise ValueError("vectors of one space differ in dimension")
        self.rows = added if not self.rows.size else np.concatenate([self.rows, added])
        self.anchors = np.concatenate(
            [self.anchors, np.array([a for _, a, _ in found], dtype=np.int64)]
        )
        self.ids += [pid for pid, _, _ in found]


class VectorIndex:
    """Exact vector search over a path, with the conversations' matrices cached."""

    def __init__(self, backend: VectorBackend, *, cache_bytes: int = 256 << 20) -> None:
        self.backend = backend
        self._cache: OrderedDict[tuple[str, str, str], _Matrix] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._held = 0

    async def marks(self, tenant: str, conv_ids: Sequence[str], space: str) -> dict[str, int]:
        return await self.backend.marks(tenant, conv_ids, space)

    async def save(
        self, tenant: str, conv_id: str, space: str, rows: Sequence[VectorRow], done_below: int
    ) -> None:
        await self.backend.save(tenant, conv_id, space, rows, done_below)

    async def pending(self, space: str, limit: int = 1000) -> list[tuple[str, str]]:
        return await self.backend.pending(space, limit)

    async def search(
        self, path: Path, space: str, query: npt.NDArray[np.float32], limit: int
    ) -> list[tuple[str, float]]:
        """The `limit` pages on `path` most similar to `query` (cosine; both unit length),
        best first: (page id, similarity)."""
        if limit <= 0:
            return []
        conv_ids = list(dict.fromkeys(span.conv_id for span in path.spans))
        marks = await self.backend.marks(path.tenant, conv_ids, space)
        # Per span on the path: its matrix and which of its rows are in the span.
        spans: list[tuple[_Matrix, npt.NDArray[np.intp]]] = []
        for span in path.spans:
            if span.conv_id not in marks:
                continue
            matrix = await self._matrix(path.tenant, span.conv_id, space, marks[span.conv_id])
            if not matrix.ids or matrix.rows.shape[1] != query.shape[0]:
                continue
            inside = matrix.anchors >= span.lo
            if span.hi is not None:
                inside &= matrix.anchors < span.hi
            rows = np.flatnonzero(inside)
            if rows.size:
                spans.append((matrix, rows))
        if not spans:
            return []
        if sum(len(rows) for _, rows in spans) > OFF_LOOP_ROWS:
            return await asyncio.to_thread(_best, spans, query, limit)
        return _best(spans, query, limit)

    async def _matrix(self, tenant: str, conv_id: str, space: str, mark: int) -> _Matrix:
        key = (tenant, conv_id, space)
        matrix = self._cache.get(key)
        if matrix is not None and matrix.done_below > mark:
            matrix = None  # the conversation was deleted and made again: start over
        if matrix is None:
            empty = np.zeros((0, 0), dtype=np.float32)
            matrix = _Matrix(0, [], np.zeros(0, dtype=np.int64), empty)
        else:
            self._held -= matrix.nbytes
            self._cache.move_to_end(key)
        if matrix.done_below < mark:
            found = await self.backend.load(tenant, conv_id, space, matrix.done_below)
            matrix.extend(found, mark)
        self._cache[key] = matrix
        self._held += matrix.nbytes
        while self._held > self._cache_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._held -= dropped.nbytes
        return matrix


async def open_vectors(store: object, *, cache_bytes: int = 256 << 20) -> VectorIndex:
    """The vector index kept beside `store`'s pages (behind its cache and timing wrappers),
    its tables made when missing."""
    inner = store
    while hasattr(inner, "inner"):
        inner = inner.inner
    backend: VectorBackend
    from proxy.store.memory import MemoryStore

    if isinstance(inner, MemoryStore):
        backend = inner.vectors
    else:
        from proxy.store.sqlite import SQLiteStore

        if isinstance(inner, SQLiteStore):
            from proxy.store.sqlite_vectors import SQLiteVectors

            backend = await SQLiteVectors.open(inner)
        else:
            from proxy.store.postgres import PostgresStore
            from proxy.store.postgres_vectors import PostgresVectors

            if not isinstance(inner, PostgresStore):
                raise TypeError(f"no vector storage for {type(inner).__name__}")
            backend = await PostgresVectors.open(inner)
    return VectorIndex(backend, cache_bytes=cache_bytes)


def _best(
    spans: list[tuple[_Matrix, npt.NDArray[np.intp]]], query: npt.NDArray[np.float32],
    limit: int,
) -> list[tuple[str, float]]:  # fmt: skip
    """The `limit` best pages of the spans' rows: one product per conversation, and ids
    made only for the top rows. A page may have several rows (its passages, `page#n`): it
    scores its best one."""
    similarity = np.concatenate([(matrix.rows @ query)[rows] for matrix, rows in spans])
    owners = np.concatenate([np.full(len(rows), n) for n, (_, rows) in enumerate(spans)])
    positions = np.concatenate([rows for _, rows in spans])
    count = min(len(similarity), limit * PASSAGES_PER_PAGE)
    while True:
        best = np.argpartition(-similarity, count - 1)[:count]
        best = best[np.argsort(-similarity[best], kind="stable")]
        found: dict[str, float] = {}
        for i in best:
            row_id = spans[owners[i]][0].ids[positions[i]]
            found.setdefault(page_of(row_id), float(similarity[i]))
        if len(found) >= limit or count == len(similarity):
            return list(found.items())[:limit]
        count = min(len(similarity), count * 2)
