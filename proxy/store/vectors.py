"""Page vectors beside the pages: stored by each backend, searched here, exactly.

A vector belongs to a page of a conversation (tenant, conv_id, anchor, page_id; a page
embedded as several passages has a row per passage, `page_id#n`) and to a vector space
(the embedder's name: vectors of two models are never compared). Each conversation also
has a mark per space, `done_below`: its pages at anchors below it have been embedded
(pages are embedded in anchor order). The mark is what the background worker resumes from
after a restart, and what a cache checks before trusting the vectors it holds.

Search is exact: the conversation's vectors are held in process as one float32 matrix per
conversation (proxy.store.vector_matrix: loaded once, then topped up with the rows past
the cached mark, by the search that finds the mark moved or by the save that moved it;
least recently used dropped past `cache_bytes`), and a query is one matrix product over
the rows of the path's spans, a page scoring its best passage. At 10k pages of 384
dimensions that is 15 MB of float32 read once, about half a millisecond here, memory-bound;
measured against the alternatives (benchmarks/embeddings.py): numpy's float16 and int8
products are slower than float32 here (no BLAS kernel for them), and sqlite-vec's exact
k-nearest query took 4.5-11 ms at 10k rows. So no quantization and no approximate index.

The mark is read for every search (another process may have embedded, or gc deleted the
conversation); a save through the index tops its cached matrix up at once, so the search
after it finds the cache current and reads nothing more. The product runs on the event
loop: on a thread it took longer (two thread hops, far slower when other processes keep
the cores busy) and a turn gained nothing, its BM25 search running on the store's thread
either way (benchmarks/embeddings.py); only past `off_loop_rows` does it go to a thread,
so that a very long conversation does not hold the loop for milliseconds.

A vector query is scoped like every page read: only the spans of the asked path, of its
tenant, are scored, and the ids found are read back through the page store, which scopes
them again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from proxy.store.base import Path, StoreError
from proxy.store.vector_matrix import Matrix, Scan, VectorRow

__all__ = ["OFF_LOOP_ROWS", "VectorBackend", "VectorIndex", "VectorRow", "open_vectors"]

# Past this many rows (about 2 ms of product here) a search scores on a thread, not on the
# event loop.
OFF_LOOP_ROWS = 40_000


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


Key = tuple[str, str, str]  # (tenant, conv_id, space)


class VectorIndex:
    """Exact vector search over a path, with the conversations' matrices cached."""

    def __init__(
        self, backend: VectorBackend, *, cache_bytes: int = 256 << 20,
        off_loop_rows: int = OFF_LOOP_ROWS,
    ) -> None:  # fmt: skip
        self.backend = backend
        self.off_loop_rows = off_loop_rows
        self._cache: OrderedDict[Key, Matrix] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._held = 0

    async def marks(self, tenant: str, conv_ids: Sequence[str], space: str) -> dict[str, int]:
        found = await self.backend.marks(tenant, conv_ids, space)
        for conv_id in conv_ids:
            self._forget_stale((tenant, conv_id, space), found.get(conv_id))
        return found

    async def save(
        self, tenant: str, conv_id: str, space: str, rows: Sequence[VectorRow], done_below: int
    ) -> None:
        await self.backend.save(tenant, conv_id, space, rows, done_below)
        if (tenant, conv_id, space) in self._cache:
            # Top the cached matrix up now (from the store: rows this process did not save
            # may lie between), so the next search finds it current. The rows are stored
            # whatever happens here: a failure only leaves the top-up to that search.
            with contextlib.suppress(StoreError):
                marks = await self.marks(tenant, [conv_id], space)
                if conv_id in marks:
                    await self._matrix(tenant, conv_id, space, marks[conv_id])

    async def pending(self, space: str, limit: int = 1000) -> list[tuple[str, str]]:
        return await self.backend.pending(space, limit)

    async def search(
        self, path: Path, space: str, query: npt.NDArray[np.float32], limit: int
    ) -> list[tuple[str, float]]:
        """The `limit` pages on `path` most similar to `query` (cosine; both unit length),
        best first: (page id, similarity)."""
        if limit <= 0:
            return []
        query = np.ascontiguousarray(query, dtype=np.float32)
        conv_ids = list(dict.fromkeys(span.conv_id for span in path.spans))
        marks = await self.marks(path.tenant, conv_ids, space)
        current = {c: await self._matrix(path.tenant, c, space, mark) for c, mark in marks.items()}
        scan = _scan(path, current, query)
        if scan.rows > self.off_loop_rows:
            return await asyncio.to_thread(scan.best, query, limit)
        return scan.best(query, limit)

    def _forget_stale(self, key: Key, mark: int | None) -> None:
        """Drop the cached matrix of a conversation whose mark is gone (gc deleted it) or
        went back (it was deleted and made again)."""
        matrix = self._cache.get(key)
        if matrix is not None and (mark is None or mark < matrix.done_below):
            del self._cache[key]
            self._held -= matrix.nbytes

    async def _matrix(self, tenant: str, conv_id: str, space: str, mark: int) -> Matrix:
        """The conversation's matrix, topped up to `mark`."""
        key = (tenant, conv_id, space)
        self._forget_stale(key, mark)
        matrix = self._cache.get(key)
        if matrix is None:
            matrix = self._cache[key] = Matrix()
        self._cache.move_to_end(key)
        if matrix.done_below < mark:
            found = await self.backend.load(tenant, conv_id, space, matrix.done_below)
            before = matrix.nbytes
            matrix.extend(found, mark)
            if self._cache.get(key) is matrix:  # (not dropped while it loaded)
                self._held += matrix.nbytes - before
        while self._held > self._cache_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._held -= dropped.nbytes
        return matrix


def _scan(path: Path, matrices: dict[str, Matrix], query: npt.NDArray[np.float32]) -> Scan:
    """The rows of `matrices` on `path`'s spans (of `query`'s dimension)."""
    parts = []
    for span in path.spans:
        matrix = matrices.get(span.conv_id)
        if matrix is not None and matrix.dim == query.shape[0]:
            part = matrix.part(span.lo, span.hi)
            if part is not None:
                parts.append(part)
    return Scan(parts)


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
