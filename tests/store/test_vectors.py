"""Page vectors (proxy.store.vectors), filled by the background embedding worker, on every
backend: what a path can see by meaning, across tenants and branches; resuming after a
restart; deleted with their conversation."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

import pytest

from proxy.loop.embedding_worker import EmbeddingWorker
from proxy.metrics import Metrics
from proxy.store import open_store
from proxy.store.base import PageStore, Path, PathSpan
from proxy.store.vectors import OFF_LOOP_ROWS, VectorIndex, open_vectors
from proxy.vm.pages import Page
from tests.store.conftest import FakeClock, make_page
from tests.support.fake_embeddings import FakeEmbedder, fake_vector

FILLER = "we talked about the weather and lunch plans number {n}"


def pages(texts: dict[int, str], first: int, last: int) -> list[Page]:
    return [make_page(n, texts.get(n, FILLER.format(n=n)), role="user" if n % 2 else "assistant")
            for n in range(first, last)]  # fmt: skip


async def conversation(store: PageStore, tenant: str, conv_id: str, found: list[Page],
                       *, parent: str | None = None, fork_at: int = 0) -> None:  # fmt: skip
    conv = await store.create_conversation(tenant, conv_id, parent_id=parent, fork_at=fork_at)
    await store.append(tenant, conv_id, found, expected_version=conv.version,
                       new_length=found[-1].anchor + 1)  # fmt: skip


async def nearest(store: PageStore, index: object, tenant: str, conv_id: str, text: str,
                  limit: int = 3) -> list[str]:  # fmt: skip
    import numpy as np

    path = await store.path(tenant, conv_id)
    query = np.array(fake_vector(text), dtype=np.float32)
    return [pid for pid, _ in await index.search(path, "fake", query, limit)]  # type: ignore[attr-defined]


async def test_vector_search_sees_only_its_tenant_and_its_branch(store: PageStore) -> None:
    index = await open_vectors(store)
    worker = EmbeddingWorker(store, index, FakeEmbedder(), Metrics(), chunk=4)
    # root: msg_2 is about a puppy; branch one (forked at 6) has a sedan at msg_7, branch two
    # a physician at msg_7; another tenant's conversation of the same id has a hound.
    await conversation(store, "t1", "root", pages({2: "my puppy Rex"}, 0, 10))
    await conversation(store, "t1", "one", pages({7: "my new sedan"}, 6, 12), parent="root",
                       fork_at=6)  # fmt: skip
    await conversation(store, "t1", "two", pages({7: "the physician said rest"}, 6, 12),
                       parent="root", fork_at=6)  # fmt: skip
    await conversation(store, "t2", "root", pages({3: "the hound barked"}, 0, 10))
    for tenant, conv in (("t1", "one"), ("t1", "two"), ("t2", "root")):
        await worker.embed_conversation(tenant, conv)

    assert (await nearest(store, index, "t1", "one", "a canine"))[0] == "msg_2"
    assert (await nearest(store, index, "t1", "one", "automobile"))[0] == "msg_7"
    # Branch one's msg_7 is its own sedan; the other branch's physician is not on its path.
    doctor = await nearest(store, index, "t1", "one", "doctor clinic", limit=20)
    assert "msg_7" in doctor and doctor[0] != "msg_7"
    assert (await nearest(store, index, "t1", "two", "doctor clinic"))[0] == "msg_7"
    assert (await nearest(store, index, "t1", "two", "automobile"))[0] != "msg_7"
    # The root's own pages past the fork (msg_6..msg_9) are no branch's.
    seen_by_one = set(await nearest(store, index, "t1", "one", "weather lunch", limit=100))
    assert seen_by_one == {f"msg_{n}" for n in range(12)}
    # Tenant two's conversation has the same id: each tenant finds only its own.
    assert (await nearest(store, index, "t2", "root", "a canine"))[0] == "msg_3"
    assert (await nearest(store, index, "t1", "root", "a canine"))[0] == "msg_2"
    # A guessed path (another tenant's spans, under a tenant that has none) finds nothing.
    import numpy as np

    query = np.array(fake_vector("a canine"), dtype=np.float32)
    for tenant in ("t3", "t2"):
        guessed = Path(tenant, (PathSpan("one", 6, None), PathSpan("root", 0, 6)))
        found = await index.search(guessed, "fake", query, 5)
        # t2 has a conversation "root" of its own: its pages below 6, never t1's.
        assert [pid for pid, _ in found][:1] == (["msg_3"] if tenant == "t2" else [])


async def test_marks_move_and_the_cache_tops_up(store: PageStore) -> None:
    index = await open_vectors(store)
    worker = EmbeddingWorker(store, index, FakeEmbedder(), Metrics(), chunk=3)
    await conversation(store, "t", "c", pages({}, 0, 5))
    assert await worker.embed_conversation("t", "c") == 5
    assert await index.marks("t", ["c"], "fake") == {"c": 5}
    assert await nearest(store, index, "t", "c", "puppy", limit=10) != []
    conv = await store.get_conversation("t", "c")
    assert conv is not None
    await store.append("t", "c", pages({6: "my puppy Rex"}, 5, 8), expected_version=conv.version,
                       new_length=8)  # fmt: skip
    assert await index.pending("fake") == [("t", "c")]
    # Only the new pages are embedded; the cached matrix takes them in.
    assert await worker.embed_conversation("t", "c") == 3
    assert (await nearest(store, index, "t", "c", "a canine"))[0] == "msg_6"
    assert await index.pending("fake") == []


async def test_an_embedder_failure_is_counted_and_the_job_dropped(store: PageStore) -> None:
    metrics = Metrics()
    index = await open_vectors(store)
    worker = EmbeddingWorker(store, index, FakeEmbedder(fail_after=1), metrics, chunk=4)
    await worker.start()
    await conversation(store, "t", "c", pages({}, 0, 10))
    worker.enqueue("t", "c")
    await worker.drain()
    await worker.close()
    assert metrics.value("vm_embeddings_failures_total", {"stage": "pages"}) == 1
    # The first chunk was stored before the failure: that much is searchable.
    assert await index.marks("t", ["c"], "fake") == {"c": 4}


async def test_a_restarted_worker_resumes_what_was_pending(tmp_path: FsPath) -> None:
    url = f"sqlite:///{tmp_path}/vm.db"
    first = await open_store(url)
    try:
        await conversation(first, "t", "c", pages({9: "my puppy Rex"}, 0, 12))
        worker = EmbeddingWorker(first, await open_vectors(first), FakeEmbedder(fail_after=1),
                                 Metrics(), chunk=4)  # fmt: skip
        await worker.start()
        worker.enqueue("t", "c")
        await worker.drain()  # one chunk embedded, then the embedder failed
        await worker.close()
    finally:
        await first.close()
    again = await open_store(url)
    try:
        index = await open_vectors(again)
        assert await index.marks("t", ["c"], "fake") == {"c": 4}
        worker = EmbeddingWorker(again, index, FakeEmbedder(), Metrics(), chunk=4)
        await worker.start()  # nothing enqueued: it finds the lagging conversation itself
        await worker.drain()
        await worker.close()
        assert await index.marks("t", ["c"], "fake") == {"c": 12}
        assert (await nearest(again, index, "t", "c", "a canine"))[0] == "msg_9"
    finally:
        await again.close()


async def test_a_full_queue_drops_the_newest_job() -> None:
    memory = await open_store("memory://")
    metrics = Metrics()
    worker = EmbeddingWorker(memory, await open_vectors(memory), FakeEmbedder(), metrics,
                             queue_size=1)  # fmt: skip
    worker.enqueue("t", "a")
    worker.enqueue("t", "a")  # already queued: not a second job
    worker.enqueue("t", "b")
    assert metrics.value("vm_embeddings_dropped_total") == 1
    await memory.close()


@pytest.mark.parametrize("conv", ["gone"])
async def test_a_deleted_conversation_takes_its_vectors(
    store: PageStore, clock: FakeClock, conv: str
) -> None:
    index = await open_vectors(store)
    worker = EmbeddingWorker(store, index, FakeEmbedder(), Metrics())
    await conversation(store, "t", conv, pages({1: "my puppy"}, 0, 4))
    await worker.embed_conversation("t", conv)
    clock.now += 10
    assert await store.gc(clock.now) == 1
    assert await index.marks("t", [conv], "fake") == {}
    assert await index.backend.load("t", conv, "fake", 0) == []


async def test_a_page_of_several_passages_is_one_hit_at_its_best(store: PageStore) -> None:
    index = await open_vectors(store)
    worker = EmbeddingWorker(store, index, FakeEmbedder(), Metrics())
    long_text = ("We spent the whole weekend painting the fence and the shed. "
                 "Later my puppy chewed through the garden hose again today.")  # fmt: skip
    await conversation(store, "t", "c", pages({1: long_text}, 0, 6))
    await worker.embed_conversation("t", "c")
    rows = await index.backend.load("t", "c", "fake", 0)
    assert [row[0] for row in rows if row[0].startswith("msg_1")] == ["msg_1", "msg_1#1"]
    found = await nearest(store, index, "t", "c", "a canine", limit=6)
    assert found[0] == "msg_1" and len(found) == len(set(found)) == 6


class _Rows:
    """A vector backend of given rows, all embedded (a mark past the last anchor)."""

    def __init__(self, rows: list[tuple[str, int, bytes]]) -> None:
        self.rows = rows

    async def marks(self, tenant: str, conv_ids: object, space: str) -> dict[str, int]:
        return {"c": len(self.rows)}

    async def load(self, tenant: str, conv_id: str, space: str, start: int) -> list[Any]:
        return [row for row in self.rows if row[1] >= start]

    async def save(self, *args: object) -> None:
        raise AssertionError("a search never writes")

    async def pending(self, space: str, limit: int) -> list[tuple[str, str]]:
        return []


@pytest.mark.parametrize("count", [50, OFF_LOOP_ROWS + 1])
async def test_search_ranks_exactly_on_the_loop_and_off_it(count: int) -> None:
    import numpy as np

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((count, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(_Rows([(f"msg_{n}", n, vectors[n].tobytes()) for n in range(count)]))
    path = Path("t", (PathSpan("c", 10, None),))
    found = await index.search(path, "s", vectors[42], 5)
    expected = [int(i) for i in np.argsort(-(vectors[10:] @ vectors[42]))[:5] + 10]
    assert [pid for pid, _ in found] == [f"msg_{i}" for i in expected]
    assert found[0] == ("msg_42", pytest.approx(1.0, abs=1e-5))
    # Rows below the span's start are not on the path, however near.
    assert "msg_3" not in [pid for pid, _ in await index.search(path, "s", vectors[3], 10)]
