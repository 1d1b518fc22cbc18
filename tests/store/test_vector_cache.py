"""The vector index's cached matrices (proxy.store.vectors, proxy.store.vector_matrix):
exact over forks and passages while they are topped up, and never serving vectors the
store no longer holds: new vectors, saved here or elsewhere, are found; a conversation
deleted by gc and made again is searched afresh."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from proxy.loop.embedding_worker import EmbeddingWorker
from proxy.metrics import Metrics
from proxy.store.base import PageStore, Path, PathSpan, StoreError
from proxy.store.vectors import VectorBackend, VectorIndex, VectorRow, open_vectors
from proxy.vm.passages import passage_id
from tests.store.conftest import FakeClock
from tests.store.test_vectors import conversation, nearest, pages
from tests.support.fake_embeddings import FakeEmbedder


class Counting:
    """A vector backend that counts the loads it serves."""

    def __init__(self, inner: VectorBackend) -> None:
        self.inner = inner
        self.loads = 0
        self.marks_fail = False

    async def marks(self, tenant: str, conv_ids: Sequence[str], space: str) -> dict[str, int]:
        if self.marks_fail:
            raise StoreError("the store went away")
        return await self.inner.marks(tenant, conv_ids, space)

    async def load(
        self, tenant: str, conv_id: str, space: str, from_anchor: int
    ) -> list[VectorRow]:
        self.loads += 1
        return await self.inner.load(tenant, conv_id, space, from_anchor)

    async def save(
        self, tenant: str, conv_id: str, space: str, rows: Sequence[VectorRow], done_below: int
    ) -> None:
        await self.inner.save(tenant, conv_id, space, rows, done_below)

    async def pending(self, space: str, limit: int) -> list[tuple[str, str]]:
        return await self.inner.pending(space, limit)


class Rows:
    """Vector rows of conversations in a dict, their marks moved by hand."""

    def __init__(self) -> None:
        self.rows: dict[str, list[VectorRow]] = {}
        self.mark: dict[str, int] = {}

    async def marks(self, tenant: str, conv_ids: Sequence[str], space: str) -> dict[str, int]:
        return {c: self.mark[c] for c in conv_ids if c in self.mark}

    async def load(
        self, tenant: str, conv_id: str, space: str, from_anchor: int
    ) -> list[VectorRow]:
        await asyncio.sleep(0)  # as a store read does: other searches run meanwhile
        return sorted(row for row in self.rows.get(conv_id, []) if row[1] >= from_anchor)

    async def save(self, *args: object) -> None:
        raise AssertionError("a search never writes")

    async def pending(self, space: str, limit: int) -> list[tuple[str, str]]:
        return []


def unit(rng: np.random.Generator, dim: int = 16) -> np.ndarray:
    vector = rng.standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def exact(rows: dict[str, list[VectorRow]], path: Path, query: np.ndarray,
          limit: int) -> list[str]:  # fmt: skip
    """The best pages on `path` by brute force: a page scores its best passage."""
    best: dict[str, float] = {}
    for span in path.spans:
        for row_id, anchor, blob in rows.get(span.conv_id, []):
            if anchor >= span.lo and (span.hi is None or anchor < span.hi):
                score = float(np.frombuffer(blob, dtype=np.float32) @ query)
                page = row_id.partition("#")[0]
                best[page] = max(best.get(page, -2.0), score)
    return sorted(best, key=lambda page: -best[page])[:limit]


@pytest.mark.parametrize("seed", range(4))
async def test_search_is_exact_over_forks_and_passages_as_the_matrix_grows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    backend = Rows()
    # A root of 40 pages and a fork of it at 23, with 40 more; each page 1-3 passages.
    for conv, first in (("root", 0), ("fork", 23)):
        backend.rows[conv] = [
            (passage_id(f"msg_{n}", k), n, unit(rng).tobytes())
            for n in range(first, first + 40) for k in range(int(rng.integers(1, 4)))
        ]  # fmt: skip
    index = VectorIndex(backend)  # type: ignore[arg-type]
    on_fork = Path("t", (PathSpan("fork", 23, None), PathSpan("root", 0, 23)))
    on_root = Path("t", (PathSpan("root", 0, None),))
    # The marks move in steps (the buffers grow and are topped up in place), searched at
    # each step; a top-up of several rows at once, then one row at a time.
    for mark in (3, 24, 25, 26, 30, 41, 63):
        backend.mark = {"root": min(mark, 40), "fork": mark}
        seen = {c: [r for r in rows if r[1] < backend.mark[c]] for c, rows in backend.rows.items()}
        for _ in range(3):
            query = unit(rng)
            for path in (on_fork, on_root):
                found = await index.search(path, "s", query, 7)
                assert [page for page, _ in found] == exact(seen, path, query, 7)
    # The root's msg_39 is not the fork's: the fork finds its own msg_39, not that vector.
    query = np.frombuffer(backend.rows["root"][-1][2], dtype=np.float32)
    assert (await index.search(on_root, "s", query, 1))[0] == ("msg_39", pytest.approx(1.0))
    on_fork_found = dict(await index.search(on_fork, "s", query, 200))
    assert len(on_fork_found) == 63 and on_fork_found["msg_39"] < 0.99
    assert len(await index.search(on_root, "s", query, 200)) == 40


async def test_searches_topping_up_together_take_each_row_once() -> None:
    rng = np.random.default_rng(1)
    backend = Rows()
    backend.rows["c"] = [(f"msg_{n}", n, unit(rng).tobytes()) for n in range(30)]
    backend.mark = {"c": 10}
    index = VectorIndex(backend)  # type: ignore[arg-type]
    path = Path("t", (PathSpan("c", 0, None),))
    await index.search(path, "s", unit(rng), 3)
    backend.mark = {"c": 30}
    await asyncio.gather(*(index.search(path, "s", unit(rng), 3) for _ in range(3)))
    matrix = index._cache[("t", "c", "s")]
    assert matrix.count == 30 and matrix.page_ids == [f"msg_{n}" for n in range(30)]


async def test_a_save_through_the_index_tops_its_cache_up(store: PageStore) -> None:
    index = await open_vectors(store)
    counting = Counting(index.backend)
    index.backend = counting
    worker = EmbeddingWorker(store, index, FakeEmbedder(), Metrics(), chunk=4)
    await conversation(store, "t", "c", pages({}, 0, 6))
    await worker.embed_conversation("t", "c")
    assert await nearest(store, index, "t", "c", "a canine") != []
    conv = await store.get_conversation("t", "c")
    assert conv is not None
    await store.append("t", "c", pages({7: "my puppy Rex"}, 6, 9),
                       expected_version=conv.version, new_length=9)  # fmt: skip
    await worker.embed_conversation("t", "c")
    counting.loads = 0
    # The worker's save put the new rows in the cached matrix: the search reads only the mark.
    assert (await nearest(store, index, "t", "c", "a canine"))[0] == "msg_7"
    assert counting.loads == 0
    # A top-up that cannot read is left to the next search; the save itself stands.
    counting.marks_fail = True
    await index.save("t", "c", "fake", [], 9)
    counting.marks_fail = False
    assert await index.marks("t", ["c"], "fake") == {"c": 9}


async def test_vectors_saved_by_another_process_are_found(store: PageStore) -> None:
    index = await open_vectors(store)
    # Another replica (or process): its own index, and worker, on the same store.
    elsewhere = VectorIndex(index.backend)
    worker = EmbeddingWorker(store, elsewhere, FakeEmbedder(), Metrics(), chunk=4)
    await conversation(store, "t", "c", pages({}, 0, 6))
    await worker.embed_conversation("t", "c")
    assert (await nearest(store, index, "t", "c", "a canine")) != []
    conv = await store.get_conversation("t", "c")
    assert conv is not None
    await store.append("t", "c", pages({7: "my puppy Rex"}, 6, 9),
                       expected_version=conv.version, new_length=9)  # fmt: skip
    await worker.embed_conversation("t", "c")
    assert (await nearest(store, index, "t", "c", "a canine"))[0] == "msg_7"


async def test_a_conversation_made_again_after_gc_is_searched_afresh(
    store: PageStore, clock: FakeClock
) -> None:
    index = await open_vectors(store)
    worker = EmbeddingWorker(store, index, FakeEmbedder(), Metrics(), chunk=4)
    await conversation(store, "t", "c", pages({2: "my puppy Rex"}, 0, 8))
    await worker.embed_conversation("t", "c")
    assert (await nearest(store, index, "t", "c", "a canine"))[0] == "msg_2"
    clock.now += 10
    assert await store.gc(clock.now) == 1
    # The same id again (a client sending the same history), its puppy now at msg_5, and
    # embedded as far as before: the cached rows of the deleted one must not answer.
    await conversation(store, "t", "c", pages({5: "my puppy Rex"}, 0, 8))
    await worker.embed_conversation("t", "c")
    assert (await nearest(store, index, "t", "c", "a canine"))[0] == "msg_5"


async def test_a_deleted_conversation_leaves_the_cache(store: PageStore, clock: FakeClock) -> None:
    index = await open_vectors(store)
    worker = EmbeddingWorker(store, index, FakeEmbedder(), Metrics())
    await conversation(store, "t", "c", pages({2: "my puppy Rex"}, 0, 8))
    await worker.embed_conversation("t", "c")
    path = await store.path("t", "c")
    assert await nearest(store, index, "t", "c", "a canine") != []
    clock.now += 10
    assert await store.gc(clock.now) == 1
    query = np.ones(64, dtype=np.float32) / 8
    assert await index.search(path, "fake", query, 5) == []
    assert index._cache == {} and index._held == 0
