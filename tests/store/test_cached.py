"""CachedStore: what it serves from memory, and that it never serves stale state."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path as FsPath

from proxy.store import open_store
from proxy.store.base import Path
from proxy.store.cached import LRU, CachedStore
from proxy.store.memory import MemoryStore
from proxy.vm.pages import Page, PageKind

from .conftest import make_page

T = "tenant-a"


def test_lru_evicts_the_least_recently_used() -> None:
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # "b" is now the oldest
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c"), len(lru)) == (1, None, 3, 2)


def test_a_weighed_lru_keeps_its_weight_under_the_bound() -> None:
    lru: LRU[str, str] = LRU(100, weigh=len, max_weight=10)
    for key, value in (("a", "xxxx"), ("b", "xxxx"), ("c", "xxxx")):
        lru.put(key, value)
    assert (lru.get("a"), lru.weight, len(lru)) == (None, 8, 2)
    lru.put("b", "x")  # replaced: its weight is the new value's
    assert lru.weight == 5
    lru.put_all([("huge", "x" * 50)])  # heavier than the bound on its own: not kept,
    assert lru.get("huge") is None  # nor does it push out what is
    assert (lru.get("b"), lru.get("c"), lru.weight) == ("x", "xxxx", 5)
    lru.pop("c")
    assert lru.weight == 1
    lru.clear()
    assert (lru.weight, len(lru)) == (0, 0)


def test_large_pages_do_not_fill_the_caches() -> None:
    """400 pages of 500 KB (pasted files) grew the process by 1.1 MB each (the review):
    the decoded-page cache kept 4096 bodies and their pages whatever their size."""
    from proxy.store import codec
    from proxy.store.cached import PAGE_CACHE_CHARS, page_weight

    codec._DECODED.clear()
    bodies = [codec.encode_page(make_page(n, f"{n} " + "y" * 500_000)) for n in range(40)]
    pages = [codec.decode_page(body) for body in bodies]
    assert codec.decode_page(bodies[0]).text == pages[0].text
    assert codec._DECODED._held <= codec.DECODED_BYTES
    small = [codec.encode_page(make_page(n, f"note {n}")) for n in range(3000)]
    for body in small:
        codec.decode_page(body)
    assert codec._DECODED._held <= codec.DECODED_BYTES
    assert codec.decode_page(small[-1]) is codec.decode_page(small[-1])  # kept
    lru: LRU[int, Page] = LRU(20_000, weigh=page_weight, max_weight=PAGE_CACHE_CHARS)
    lru.put_all((n, page) for n, page in enumerate(pages * 10))
    assert lru.weight <= PAGE_CACHE_CHARS and len(lru) < 400


async def test_a_replica_never_serves_a_conversation_another_replica_changed(
    tmp_path: FsPath,
) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    one = await open_store(url, cache_pages=100)
    two = await open_store(url, cache_pages=100)
    try:
        await one.create_conversation(T, "c")
        cached = await one.get_conversation(T, "c")
        assert cached is not None and cached.version == 0
        await two.append(T, "c", [make_page(0)], expected_version=0, new_length=1,
                         state={"by": "two"})
        seen = await one.get_conversation(T, "c")
        assert seen is not None and (seen.version, seen.length, seen.state) == (
            1, 1, {"by": "two"},
        )
        assert await one.get_conversation(T, "c") is seen  # unchanged: served from cache
        await two.gc(older_than=10**12)
        assert await one.get_conversation(T, "c") is None
    finally:
        await one.close()
        await two.close()


async def _stored_elsewhere(inner: MemoryStore, pages: int) -> tuple[CachedStore, Path]:
    """A cache over `inner`, and the path of its conversation "c" of `pages` pages stored
    by another replica: this one learns them only by reading them."""
    store = CachedStore(inner, max_pages=100)
    await store.create_conversation(T, "c")
    await inner.append(T, "c", [make_page(n) for n in range(pages)], expected_version=0,
                       new_length=pages)
    return store, await store.path(T, "c")


async def test_pages_are_served_from_cache_once_read() -> None:
    store, path = await _stored_elsewhere(MemoryStore(), 4)
    assert set(await store.get_pages(path, ["msg_0", "msg_1"])) == {"msg_0", "msg_1"}
    assert (store.page_hits, store.page_misses) == (0, 2)
    got = await store.get_pages(path, ["msg_1", "msg_0", "msg_3"])
    assert list(got) == ["msg_1", "msg_0", "msg_3"]
    assert (store.page_hits, store.page_misses) == (2, 3)
    await store.gc(older_than=10**12)
    assert await store.get_pages(path, ["msg_0"]) == {}


async def test_a_parents_derived_page_does_not_shadow_the_leafs() -> None:
    store = CachedStore(MemoryStore(), max_pages=100)
    await store.create_conversation(T, "p")
    trunk = [make_page(n) for n in range(3)]
    await store.append(T, "p", [*trunk, make_page(0, "parent claim", prefix="claim", anchor=1,
                                                   kind=PageKind.CLAIM)],
                       expected_version=0, new_length=3)
    await store.create_conversation(T, "k", parent_id="p", fork_at=2)
    await store.append(T, "k", [make_page(2, "edited"), make_page(0, "child claim",
                                                                  prefix="claim", anchor=2)],
                       expected_version=0, new_length=3)
    parent_path, child_path = await store.path(T, "p"), await store.path(T, "k")
    assert (await store.get_pages(parent_path, ["claim_0"]))["claim_0"].text == "parent claim"
    for _ in range(2):  # the second round is answered from the cache
        got = await store.get_pages(child_path, ["claim_0", "msg_0", "msg_2"])
        assert [p.text for p in got.values()] == ["child claim", "message number 0", "edited"]
    assert (await store.get_pages(parent_path, ["msg_2"]))["msg_2"].text == "message number 2"


class _Counting(MemoryStore):
    """A memory store that records the ranges asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: list[tuple[int, int]] = []

    async def pages_in_range(
        self, path: Path, lo: int, hi: int, *, prefixes: Sequence[str] = ("msg",)
    ) -> list[Page]:
        self.ranges.append((lo, hi))
        return await super().pages_in_range(path, lo, hi, prefixes=prefixes)


async def test_message_ranges_are_served_from_cache_up_to_the_first_page_not_held() -> None:
    inner = _Counting()
    store, path = await _stored_elsewhere(inner, 6)
    assert len(await store.pages_in_range(path, 0, 6)) == 6
    assert [p.page_id for p in await store.pages_in_range(path, 2, 5)] == [
        "msg_2", "msg_3", "msg_4"]
    assert inner.ranges == [(0, 6)]  # the second read came from the cache
    await inner.append(T, "c", [make_page(6), make_page(7)], expected_version=1, new_length=8)
    got = await store.pages_in_range(path, 3, 8)
    assert [p.page_id for p in got] == ["msg_3", "msg_4", "msg_5", "msg_6", "msg_7"]
    assert inner.ranges == [(0, 6), (6, 8)]  # only what the cache could not answer
    claims = await store.pages_in_range(path, 0, 8, prefixes=("msg", "claim"))
    assert len(claims) == 8 and inner.ranges[-1] == (0, 8)  # other pages: always asked


async def test_an_append_caches_the_message_pages_it_stored_and_no_other() -> None:
    inner = _Counting()
    store = CachedStore(inner, max_pages=100)
    await store.create_conversation(T, "c")
    await store.append(T, "c", [make_page(n) for n in range(4)], expected_version=0,
                       new_length=4)
    path = await store.path(T, "c")
    assert [p.text for p in await store.pages_in_range(path, 0, 4)] == [
        f"message number {n}" for n in range(4)]
    assert inner.ranges == []  # the appended pages were cached
    # A retried append naming msg_2 again, changed: the store keeps the page it has, and
    # so must the cache; msg_4 is new and is cached.
    await store.append(T, "c", [make_page(2, "changed"), make_page(4),
                                make_page(0, "a claim", prefix="claim", anchor=4)],
                       expected_version=1, new_length=5)
    got = await store.get_pages(path, ["msg_2", "msg_4", "claim_0"])
    assert [p.text for p in got.values()] == ["message number 2", "message number 4", "a claim"]
    assert (await inner.get_pages(path, ["msg_2"]))["msg_2"].text == "message number 2"
    assert store.page_misses == 1  # the claim: only message pages are learnt from appends


async def test_an_append_on_a_row_the_cache_does_not_hold_caches_nothing() -> None:
    inner = _Counting()
    store = CachedStore(inner, max_pages=100)
    await inner.create_conversation(T, "c")  # the row is not cached here
    await store.append(T, "c", [make_page(0)], expected_version=0, new_length=1)
    path = await store.path(T, "c")
    assert len(await store.pages_in_range(path, 0, 1)) == 1
    assert inner.ranges == [(0, 1)]


def test_an_inline_image_weighs_its_data() -> None:
    """A 4 MB base64 image weighed 640 characters (its text renderings only), so the
    bound let thousands of them in (the review of the first version)."""
    from proxy.store.cached import page_weight
    from proxy.tokens import counter_for_model
    from proxy.vm.ingest import Counters, ingest_messages

    data = "data:image/png;base64," + "A" * 4_000_000
    message = {"role": "user", "content": [
        {"type": "text", "text": "Look at this."},
        {"type": "image_url", "image_url": {"url": data}}]}
    pages = ingest_messages([message], first_position=0, counters=Counters(),
                            counter=counter_for_model("gpt-4o"), segment_turns=8).pages
    kinds = {page.page_id.split("_")[0] for page in pages}
    assert {"msg", "img"} <= kinds
    assert all(page_weight(page) > 4_000_000 for page in pages
               if page.page_id.split("_")[0] in ("msg", "img"))
