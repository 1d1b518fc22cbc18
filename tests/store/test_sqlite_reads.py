"""SQLite reads issued together travel to a reader thread together (one hop), and each
still gets its own answer, error or cancellation."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any

import pytest

from proxy.store import sqlite_queries as q
from proxy.store.base import StoreError, UnknownConversation
from proxy.store.sqlite import SQLiteStore

from .conftest import hold, make_page

T = "tenant-a"


async def _store(tmp_path: FsPath) -> tuple[SQLiteStore, list[int]]:
    """A store with conversation "c" of 6 pages, and the sizes of the batches it runs."""
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/reads.db")
    await store.create_conversation(T, "c")
    await store.append(T, "c", [make_page(n, f"page {n} about trams") for n in range(6)],
                       expected_version=0, new_length=6)
    batches: list[int] = []
    send: Callable[..., None] = store._send_reads

    def counted(loop: asyncio.AbstractEventLoop) -> None:
        batches.append(len(store._pending))
        send(loop)

    store._send_reads = counted  # type: ignore[method-assign]
    return store, batches


async def test_reads_issued_together_share_one_hop(tmp_path: FsPath) -> None:
    store, batches = await _store(tmp_path)
    try:
        path = await store.path(T, "c")
        assert batches == [1]
        pages, in_range, hits, conv = await asyncio.gather(
            store.get_pages(path, ["msg_1"]),
            store.pages_in_range(path, 4, 6),
            store.search(path, "trams", limit=2),
            store.get_conversation(T, "c"),
        )
        assert batches == [1, 4]
        assert list(pages) == ["msg_1"]
        assert [p.page_id for p in in_range] == ["msg_4", "msg_5"]
        assert len(hits) == 2 and conv is not None and conv.length == 6
        await store.get_conversation(T, "c")
        await store.get_conversation(T, "c")
        assert batches == [1, 4, 1, 1]  # one after the other: a hop each
    finally:
        await store.close()


async def test_a_failing_or_cancelled_read_leaves_the_others_alone(tmp_path: FsPath) -> None:
    store, batches = await _store(tmp_path)
    try:
        path = await store.path(T, "c")
        doomed = asyncio.ensure_future(store.get_pages(path, ["msg_0"]))
        missing = asyncio.ensure_future(store.path(T, "missing"))
        kept = asyncio.ensure_future(store.pages_in_range(path, 0, 2))
        await asyncio.sleep(0)  # each has issued its read; the batch is not sent yet
        doomed.cancel()
        with pytest.raises(UnknownConversation):
            await missing
        assert [p.page_id for p in await kept] == ["msg_0", "msg_1"]
        assert doomed.cancelled()
        assert batches == [1, 3]
    finally:
        await store.close()


async def test_a_read_or_write_after_close_is_a_store_error(tmp_path: FsPath) -> None:
    store, _ = await _store(tmp_path)
    await store.close()
    with pytest.raises(StoreError):
        await store.get_conversation(T, "c")
    with pytest.raises(StoreError):  # and a write
        await store.append(T, "c", [make_page(6)], expected_version=1, new_length=7)


async def test_a_read_of_a_conversation_being_written_waits_for_the_write(
    tmp_path: FsPath,
) -> None:
    store, _ = await _store(tmp_path)
    try:
        await store.create_conversation(T, "other")
        path, other = await store.path(T, "c"), await store.path(T, "other")
        started, release = hold(store, "_append")
        writing = asyncio.ensure_future(store.append(
            T, "c", [make_page(6, "page 6 about ferries")], expected_version=1, new_length=7))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        same = asyncio.ensure_future(store.search(path, "ferries", limit=2))
        elsewhere = await store.pages_in_range(other, 0, 1)  # not held up by the write
        assert elsewhere == [] and not same.done()
        release.set()
        await writing
        # Queued behind the append on the writer thread, the search found its page.
        assert [hit.page.page_id for hit in await same] == ["msg_6"]
    finally:
        await store.close()


async def test_a_slow_deferred_write_holds_up_no_other_conversation_nor_the_health_check(
    tmp_path: FsPath,
) -> None:
    # A deferred append of a huge page keeps the writer thread busy for seconds: another
    # client's chat (its hash lookup and conversation reads) and /healthz must not queue
    # behind it, and the lookup must still find the messages the write will store.
    store, _ = await _store(tmp_path)
    try:
        await store.create_conversation(T, "other")
        started, release = hold(store, "_append")
        big = make_page(6, "a huge answer", chain_hash="h6")
        deferred = await store.append(T, "c", [big], expected_version=1, new_length=7,
                                      state={"turn": 1}, durable=False)
        assert deferred.version == 2
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)

        quick = asyncio.gather(
            store.ping(),
            store.lookup_hashes(T, ["h6", "unknown"]),
            store.get_conversation(T, "other"),
        )
        _, found, other = await asyncio.wait_for(quick, 5)
        assert found == {"h6": ("c", 6)} and other is not None
        # Reads of the conversation being written still wait for it, and so does a read of
        # no one conversation that could look for what the write stores.
        same = asyncio.ensure_future(store.get_conversation(T, "c"))
        session = asyncio.ensure_future(store.resolve_session(T, "s"))
        await asyncio.sleep(0.2)
        assert not same.done() and not session.done()
        release.set()
        conv = await same
        assert conv is not None and conv.length == 7 and await session is None
        assert store._deferred_hashes == {}  # forgotten once committed
        assert await store.lookup_hashes(T, ["h6"]) == {"h6": ("c", 6)}
    finally:
        release.set()
        await store.close()


async def _steps_to_get_pages(tmp_path: FsPath, stored: int) -> int:
    """SQLite's VM steps (a progress handler's calls) for get_pages of 16 ids on a path of
    two spans (a fork at 20 of a conversation of `stored` pages)."""
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/steps-{stored}.db")
    try:
        await store.create_conversation(T, "c")
        await store.append(T, "c", [make_page(n) for n in range(stored)],
                           expected_version=0, new_length=stored)
        await store.create_conversation(T, "d", parent_id="c", fork_at=20)
        await store.append(T, "d", [make_page(20, anchor=20)],
                           expected_version=0, new_length=21)
        path = await store.path(T, "d")
        assert len(path.spans) == 2
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / f"steps-{stored}.db")
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    wanted = [f"msg_{n}" for n in range(16)]
    conn.set_progress_handler(step, 1)
    try:
        pages = q.get_pages(conn, path, wanted)
    finally:
        conn.close()
    assert list(pages) == wanted
    return steps


async def test_a_page_by_id_on_a_forked_path_is_looked_up_not_scanned_for(
    tmp_path: FsPath,
) -> None:
    # With the spans' OR alone, SQLite read every page of the tenant (4,825 steps here, 645
    # with 20 pages stored).
    few = await _steps_to_get_pages(tmp_path, 20)
    many = await _steps_to_get_pages(tmp_path, 400)
    assert many < few + 100, (few, many)


class _Locked:
    """A connection whose every statement meets a lock (SQLITE_BUSY)."""

    def execute(self, *args: Any) -> Any:
        busy = sqlite3.OperationalError("database is locked")
        busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
        raise busy


async def test_a_new_roots_reads_are_made_on_the_loop_or_on_a_thread_when_they_must_wait(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_root reads on the event loop's own connection (no thread, no batch), unless a
    write of the conversation is under way (behind it, on the writer) or the read meets a
    lock (on a thread)."""
    store, batches = await _store(tmp_path)
    try:
        root = await store.open_root(T, "r1", ["x0"])
        assert root is not None and root.length == 0
        on_loop = store._conns.on_loop()
        assert on_loop.execute("PRAGMA busy_timeout").fetchone() == (0,)  # waits for no lock
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            on_loop.execute("DELETE FROM conversations")
        assert await store.open_root(T, "c", ["unknown"]) == await store.get_conversation(T, "c")
        assert batches == [1]  # get_conversation's; none of open_root's

        started, release = hold(store, "_create")
        creating = asyncio.ensure_future(store.create_conversation(T, "r2"))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        opening = asyncio.ensure_future(store.open_root(T, "r2", ["y0"]))
        await asyncio.sleep(0.05)
        assert not opening.done()  # behind the create
        release.set()
        assert await opening == await creating
        assert batches == [1, 1]

        monkeypatch.setattr(store._conns, "on_loop", _Locked)
        locked = await store.open_root(T, "r3", ["z0"])
        assert locked is not None and locked.conv_id == "r3"
        assert batches == [1, 1, 1]  # read on a thread
    finally:
        await store.close()


async def test_a_chained_requests_response_id_is_found_on_the_loop(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, batches = await _store(tmp_path)
    try:
        await store.remember_response(T, "resp_1", "c", 4)
        assert await store.find_response(T, "resp_1") == ("c", 4)
        assert await store.find_response(T, "resp_2") is None
        assert batches == []  # no trip to a thread
        monkeypatch.setattr(store._conns, "on_loop", _Locked)
        assert await store.find_response(T, "resp_1") == ("c", 4)
        assert batches == [1]  # on a thread when the loop's read meets a lock
    finally:
        await store.close()


async def test_a_new_roots_failed_read_is_a_store_error(tmp_path: FsPath) -> None:
    store, _ = await _store(tmp_path)
    await store.close()
    with pytest.raises(StoreError, match="sqlite store failed"):
        await store.open_root(T, "r1", ["x0"])


async def test_a_new_root_created_and_appended_to_while_its_read_was_away_is_returned_as_it_is(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests opening the same new chat: the other one creates it, and appends its
    turn, while this one's read is away. This one gets the row as it now is (version 1,
    its two messages), not a new one at version 0 that its next append would be refused
    on."""
    store, _ = await _store(tmp_path)
    real = store._read_small

    async def meanwhile(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        found = await real(fn, *args, **kwargs)
        other = await store.create_conversation(T, "r4", durable=False)  # the other request
        await store.append(T, "r4", [make_page(0, "q"), make_page(1, "a")],
                           expected_version=other.version, new_length=2, state={"n": 2},
                           durable=False)
        return found

    monkeypatch.setattr(store, "_read_small", meanwhile)
    try:
        row = await store.open_root(T, "r4", ["w0"])
        assert row is not None and (row.version, row.length, row.state) == (1, 2, {"n": 2})
        monkeypatch.undo()
        after = await store.append(T, "r4", [make_page(2, "next")], expected_version=1,
                                   new_length=3, state={"n": 3}, durable=False)
        assert (after.version, after.length) == (2, 3)
        stored = await store.get_conversation(T, "r4")
        assert stored is not None and (stored.version, stored.length) == (2, 3)
    finally:
        await store.close()


async def test_a_conversations_version_is_read_on_the_loop_or_behind_its_write(
    tmp_path: FsPath,
) -> None:
    """conversation_version (what a cached row is checked by, and a repeated request's
    answer: proxy.loop.short_chat.SameTurn) reads on the loop's connection, unless a write
    of the conversation is under way: then it waits for it, and reads what it wrote."""
    store, batches = await _store(tmp_path)
    try:
        assert await store.conversation_version(T, "c") == 1
        assert await store.conversation_version(T, "nobody") is None
        assert batches == []  # no trip to a thread
        started, release = hold(store, "_append")
        writing = asyncio.ensure_future(store.append(
            T, "c", [make_page(6, "page 6 about ferries")], expected_version=1, new_length=7))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        version = asyncio.ensure_future(store.conversation_version(T, "c"))
        await asyncio.sleep(0.05)
        assert not version.done()  # behind the append
        release.set()
        await writing
        assert await version == 2
        assert batches == [1]
    finally:
        await store.close()
