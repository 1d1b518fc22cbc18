"""SQLite deferred writes (appends nobody waits for) go to the writer thread together, in
one transaction, and whatever follows them on that thread still runs behind them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path as FsPath
from typing import Any

import pytest

from proxy.serving import SERVING
from proxy.store.base import UnknownConversation, VersionConflict
from proxy.store.sqlite import SQLiteStore
from proxy.store.sqlite_threads import Lane

from .conftest import count_commits, hold, make_page

T = "tenant-a"


async def _store(tmp_path: FsPath, conversations: int) -> SQLiteStore:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/deferred.db")
    for i in range(conversations):
        await store.create_conversation(T, f"c{i}")
    return store


async def test_deferred_appends_reach_the_writer_together(tmp_path: FsPath) -> None:
    store = await _store(tmp_path, 5)
    sent: list[int] = []
    submit = Lane.submit

    def counted(lane: Lane, loop: asyncio.AbstractEventLoop, batch: list[Any]) -> None:
        if lane is store._writer:
            sent.append(len(batch))
        submit(lane, loop, batch)

    try:
        groups = count_commits(store)
        Lane.submit = counted  # type: ignore[method-assign]
        for i in range(5):
            await store.append(T, f"c{i}", [make_page(0, f"turn of chat {i}")],
                               expected_version=0, new_length=1, state={}, durable=False)
        assert sent == []  # held back for the others a moment
        await asyncio.sleep(0.05)
        assert sent == [5]
        while store._deferred:
            await asyncio.sleep(0.01)
        assert groups == [5]  # one transaction
    finally:
        Lane.submit = submit  # type: ignore[method-assign]
        await store.close()
    reopened = await SQLiteStore.open(f"sqlite:///{tmp_path}/deferred.db")
    try:
        for i in range(5):
            conv = await reopened.get_conversation(T, f"c{i}")
            assert conv is not None and conv.length == 1
    finally:
        await reopened.close()


async def test_a_read_after_deferred_appends_sees_them(tmp_path: FsPath) -> None:
    store = await _store(tmp_path, 1)
    try:
        await store.append(T, "c0", [make_page(0, "the ferry leaves at nine")],
                           expected_version=0, new_length=1, state={"n": 1}, durable=False)
        conv = await store.get_conversation(T, "c0")
        assert conv is not None and conv.length == 1 and conv.state == {"n": 1}
        path = await store.path(T, "c0")
        assert [p.page_id for p in await store.pages_in_range(path, 0, 1)] == ["msg_0"]
    finally:
        await store.close()


async def test_closing_the_store_writes_the_deferred_appends(tmp_path: FsPath) -> None:
    store = await _store(tmp_path, 1)
    await store.append(T, "c0", [make_page(0, "the ferry leaves at nine")],
                       expected_version=0, new_length=1, state={}, durable=False)
    await store.close()
    reopened = await SQLiteStore.open(f"sqlite:///{tmp_path}/deferred.db")
    try:
        conv = await reopened.get_conversation(T, "c0")
        assert conv is not None and conv.length == 1
    finally:
        await reopened.close()


async def test_a_deferred_append_on_a_version_already_taken_is_refused(tmp_path: FsPath) -> None:
    """Two short chats opening alike share a conversation: both answers are appended on
    version 0. The second must get VersionConflict (and be placed again), not a row at
    version 1 it never wrote: a row nobody can tell from the one stored, on which the
    client's next turn would be stored after the other client's answer."""
    store = await _store(tmp_path, 1)
    try:
        first = await store.append(T, "c0", [make_page(0, "the first client's answer")],
                                   expected_version=0, new_length=1, state={"who": 1},
                                   durable=False)
        assert first.version == 1
        with pytest.raises(VersionConflict):
            await store.append(T, "c0", [make_page(0, "the second client's answer")],
                               expected_version=0, new_length=1, state={"who": 2},
                               durable=False)
        # As when the first was committed before the second came.
        await store.append(T, "c0", [make_page(1, "the first client's next turn")],
                           expected_version=1, new_length=2, state={"who": 1}, durable=False)
        while store._deferred:
            await asyncio.sleep(0.01)
        with pytest.raises(VersionConflict):
            await store.append(T, "c0", [make_page(1, "the second client's next turn")],
                               expected_version=1, new_length=2, state={"who": 2},
                               durable=False)
        conv = await store.get_conversation(T, "c0")
        assert conv is not None and (conv.version, conv.state) == (2, {"who": 1})
        assert store.write_failure is None  # no deferred write was lost
    finally:
        await store.close()



async def test_after_a_lost_deferred_append_the_next_one_is_refused(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deferred append lost (here: a disk error) leaves callers holding its row. An
    append on that row must raise VersionConflict, so that the caller reads the
    conversation again, rather than be deferred and lost in turn, and so every turn after."""
    store = await _store(tmp_path, 1)
    try:
        def disk_error(*args: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "_append", disk_error)
        held = await store.append(T, "c0", [make_page(0, "lost")], expected_version=0,
                                  new_length=1, state={}, durable=False)
        while store._deferred:
            await asyncio.sleep(0.01)
        assert store.write_failure is not None  # lost, as deferred writes may be
        monkeypatch.undo()
        with pytest.raises(VersionConflict):
            await store.append(T, "c0", [make_page(1, "next")], expected_version=held.version,
                               new_length=2, state={}, durable=False)
    finally:
        await store.close()


async def test_the_conversations_kept_for_deferral_are_bounded(tmp_path: FsPath) -> None:
    """Past `known_cap` the older half is forgotten; an append on a forgotten conversation
    is written durably (and it is known again), one on a stale version still refused."""
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/deferred.db")
    store.known_cap = 4
    try:
        for i in range(10):
            await store.create_conversation(T, f"c{i}")
            assert len(store._forks) <= 4 and store._forks.keys() == store._versions.keys()
        assert (T, "c0") not in store._forks
        await store.append(T, "c0", [make_page(0, "forgotten")], expected_version=0,
                           new_length=1, state={}, durable=False)
        assert store._deferred == 0  # written before append returned
        assert (T, "c0") in store._forks
        await store.append(T, "c0", [make_page(1, "known again")], expected_version=1,
                           new_length=2, state={}, durable=False)
        assert store._deferred == 1
        for i in range(1, 10):  # c0 forgotten again
            await store.get_conversation(T, f"c{i}")
        assert (T, "c0") not in store._forks
        with pytest.raises(VersionConflict):
            await store.append(T, "c0", [make_page(1, "stale")], expected_version=1,
                               new_length=2, state={}, durable=False)
        conv = await store.get_conversation(T, "c0")
        assert conv is not None and conv.version == 2
    finally:
        await store.close()


async def test_a_read_begun_before_a_forgetting_teaches_nothing(tmp_path: FsPath) -> None:
    """Its row may predate a deferred append whose version was just forgotten: learned,
    an append on that row would be deferred, and lost unseen."""
    store = await _store(tmp_path, 1)
    try:
        await store.append(T, "c0", [make_page(0, "turn")], expected_version=0,
                           new_length=1, state={}, durable=False)
        reading = asyncio.ensure_future(store.get_conversation(T, "c0"))
        await asyncio.sleep(0)  # the read has begun
        store._forget_older_half()
        conv = await reading
        assert conv is not None and (T, "c0") not in store._forks
    finally:
        await store.close()


def hold_the_writer(store: SQLiteStore) -> tuple[threading.Event, asyncio.Future[Any]]:
    """Keep the writer thread busy (as with another client's 30 MB page) until the event
    is set; the future is that write."""
    release = threading.Event()
    busy = asyncio.ensure_future(store._write(lambda conn: release.wait(30)))
    return release, busy


async def test_a_deferred_create_and_its_append_answer_while_the_writer_is_busy(
    tmp_path: FsPath,
) -> None:
    """A whole-history request's new conversation (or fork) and its turn wait for no write
    in progress, however slow: the create goes to the writer with the append."""
    store = await _store(tmp_path, 1)  # c0: the parent of a fork below
    await store.append(T, "c0", [make_page(0, "the parent's first message")],
                       expected_version=0, new_length=1, state={}, durable=False)
    parent = await store.get_conversation(T, "c0")
    assert parent is not None
    later = parent.updated_at + 100
    store._clock = lambda: later
    release, busy = hold_the_writer(store)
    try:
        await asyncio.sleep(0)  # the slow write is on the writer thread
        answered = asyncio.gather(
            store.create_conversation(T, "new", durable=False),
            store.create_conversation(T, "fork", parent_id="c0", fork_at=1, durable=False),
        )
        # A liveness guard, not a timing: without deferral these wait for the release.
        new, fork = await asyncio.wait_for(answered, 20)
        assert (new.version, new.length, new.parent_id) == (0, 0, None)
        assert (fork.version, fork.length, fork.parent_id, fork.fork_at) == (0, 1, "c0", 1)
        rows = await asyncio.wait_for(asyncio.gather(
            store.append(T, "new", [make_page(0, "a new chat")], expected_version=0,
                         new_length=1, state={"n": 1}, durable=False),
            store.append(T, "fork", [make_page(1, "a regenerated answer")],
                         expected_version=0, new_length=2, state={"n": 2}, durable=False),
        ), 20)
        assert [(row.version, row.length) for row in rows] == [(1, 1), (1, 2)]
        # Reads of them wait for the deferred writes, and see them.
        reading = asyncio.ensure_future(store.get_conversation(T, "fork"))
        assert not busy.done()  # all of the above answered while the writer was held
    finally:
        release.set()
    await busy
    read = await reading
    assert read is not None and (read.version, read.length, read.state) == (1, 2, {"n": 2})
    await store.close()
    reopened = await SQLiteStore.open(f"sqlite:///{tmp_path}/deferred.db")
    try:
        for conv_id, length in (("new", 1), ("fork", 2)):
            conv = await reopened.get_conversation(T, conv_id)
            assert conv is not None and (conv.version, conv.length) == (1, length)
        touched = await reopened.get_conversation(T, "c0")
        assert touched is not None and touched.updated_at == later  # forking used it
        path = await reopened.path(T, "fork")
        assert [p.page_id for p in await reopened.pages_in_range(path, 0, 2)] == [
            "msg_0", "msg_1"]
    finally:
        await reopened.close()


def hold_the_writer_deferred(store: SQLiteStore) -> tuple[threading.Event, asyncio.Future[Any]]:
    """As hold_the_writer, with a deferred write (another client's 30 MB turn), sent."""
    release = threading.Event()
    busy = store._defer(lambda conn, tenant, conv_id: release.wait(30), T, "other")
    store._send_deferred()
    return release, busy


async def test_a_deferred_create_waits_a_moment_for_the_deferred_writes_sent(
    tmp_path: FsPath,
) -> None:
    """They commit while this first turn waits, not beside the chat's next turns (the
    writer thread and the loop contend for the GIL otherwise)."""
    store = await _store(tmp_path, 0)
    store.catch_up_s = 30  # a liveness bound, far above any wait here
    release, busy = hold_the_writer_deferred(store)
    try:
        creating = asyncio.ensure_future(store.create_conversation(T, "new", durable=False))
        await asyncio.sleep(0.2)  # its read, on a reader thread, answered long ago
        assert not creating.done()
        release.set()
        row = await asyncio.wait_for(creating, 20)
        assert busy.done() and (row.version, row.length) == (0, 0)
    finally:
        release.set()
        await store.close()


async def create_without_waiting(
    store: SQLiteStore, release: threading.Event, busy: asyncio.Future[Any]
) -> None:
    """A deferred create answers while the writer is held (`busy`), then lets it go. A
    liveness guard, not a timing: a create that waited would answer after catch_up_s, or
    once released."""
    try:
        row = await asyncio.wait_for(store.create_conversation(T, "new", durable=False), 20)
        assert (row.version, row.length) == (0, 0)
        assert not busy.done()
    finally:
        release.set()
    await busy


async def test_a_deferred_create_waits_for_no_slow_write(tmp_path: FsPath) -> None:
    """The wait is bounded: a write that takes long (another client's huge page) is not
    waited for."""
    store = await _store(tmp_path, 0)
    await create_without_waiting(store, *hold_the_writer_deferred(store))
    await store.close()
    reopened = await SQLiteStore.open(f"sqlite:///{tmp_path}/deferred.db")
    try:
        assert await reopened.get_conversation(T, "new") is not None  # committed at close
    finally:
        await reopened.close()


async def test_a_deferred_create_waits_for_no_writer_busy_with_a_huge_page(
    tmp_path: FsPath,
) -> None:
    """Not even a moment: the writer may be in a long call that holds the GIL."""
    store = await _store(tmp_path, 1)
    store.catch_up_s = 30  # only the huge page may keep the create from waiting
    release, busy = hold_the_writer_deferred(store)
    try:
        await store.append(T, "c0", [make_page(0, "x" * 100_000)], expected_version=0,
                           new_length=1, state={}, durable=False)
    finally:
        await create_without_waiting(store, release, busy)
    await store.close()


async def test_a_deferred_create_waits_for_no_write_while_other_requests_are_served(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer runs beside them anyway: waiting would only hold this one up."""
    store = await _store(tmp_path, 0)
    store.catch_up_s = 30
    monkeypatch.setattr(SERVING, "requests", 2)  # this request and another
    await create_without_waiting(store, *hold_the_writer_deferred(store))
    await store.close()


async def test_a_deferred_create_returns_the_row_another_process_stored(
    tmp_path: FsPath,
) -> None:
    """Deferred, a create still reads first: a conversation another process stored (this
    one never saw it) is returned as stored, so an append on it is checked against its
    real version, not against a row made up here."""
    mine = await _store(tmp_path, 0)
    other = await SQLiteStore.open(f"sqlite:///{tmp_path}/deferred.db")
    try:
        await other.create_conversation(T, "c0")
        await other.append(T, "c0", [make_page(0, "stored by the other process")],
                           expected_version=0, new_length=1, state={"by": "other"})
        found = await mine.create_conversation(T, "c0", durable=False)
        assert (found.version, found.length, found.state) == (1, 1, {"by": "other"})
        assert mine._deferred == 0  # nothing queued: the row was there
    finally:
        await other.close()
        await mine.close()


async def test_a_lost_deferred_create_is_forgotten_and_made_again(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deferred create lost (here: a disk error) loses the append queued after it; the
    store forgets both, refuses an append on the row it returned, and the next create
    of that conversation (the client's next request) is written."""
    store = await _store(tmp_path, 0)
    try:
        def disk_error(*args: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "_create", disk_error)
        row = await store.create_conversation(T, "c0", durable=False)
        held = await store.append(T, "c0", [make_page(0, "lost")], expected_version=row.version,
                                  new_length=1, state={}, durable=False)
        while store._deferred:
            await asyncio.sleep(0.01)
        assert store.write_failure is not None
        assert (T, "c0") not in store._forks
        monkeypatch.undo()
        with pytest.raises(UnknownConversation):
            await store.append(T, "c0", [make_page(1, "next")], expected_version=held.version,
                               new_length=2, state={}, durable=False)
        assert await store.get_conversation(T, "c0") is None
        again = await store.create_conversation(T, "c0", durable=False)
        await store.append(T, "c0", [make_page(0, "sent again")], expected_version=again.version,
                           new_length=1, state={}, durable=False)
        conv = await store.get_conversation(T, "c0")
        assert conv is not None and (conv.version, conv.length) == (1, 1)
        assert store.write_failure is None
    finally:
        await store.close()


async def test_a_deferred_response_id_is_found_without_waiting_for_the_writer(
    tmp_path: FsPath,
) -> None:
    """A chained request right after a whole-history one finds the id its deferred append
    will record at once, as the hash lookup finds its hashes; an id not among them is read
    on the event loop's connection, neither behind the deferred writes on the writer's
    thread nor on a reader's (the deferred writes are left to their window)."""
    store = await _store(tmp_path, 2)
    sent: list[tuple[str, int]] = []
    submit = Lane.submit

    def counted(lane: Lane, loop: asyncio.AbstractEventLoop, batch: list[Any]) -> None:
        sent.append(("writer" if lane is store._writer else "reader", len(batch)))
        submit(lane, loop, batch)

    try:
        Lane.submit = counted  # type: ignore[method-assign]
        await store.append(T, "c0", [make_page(0, "the other chat's turn")],
                           expected_version=0, new_length=1, state={}, durable=False)
        await store.append(T, "c1", [make_page(0), make_page(1, role="assistant")],
                           expected_version=0, new_length=2, state={}, durable=False,
                           response_id="resp_1")
        assert await store.find_response(T, "resp_1") == ("c1", 2)
        assert sent == []  # known here: nothing sent anywhere
        assert await store.find_response(T, "resp_other") is None
        assert sent == []
        while store._deferred:
            await asyncio.sleep(0.01)
        assert store._deferred_responses == {}
        assert await store.find_response(T, "resp_1") == ("c1", 2)  # as committed
    finally:
        Lane.submit = submit  # type: ignore[method-assign]
        await store.close()


async def test_a_lost_deferred_append_loses_its_response_id(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await _store(tmp_path, 1)
    try:
        def disk_error(*args: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "_append", disk_error)
        await store.append(T, "c0", [make_page(0), make_page(1, role="assistant")],
                           expected_version=0, new_length=2, state={}, durable=False,
                           response_id="resp_1")
        while store._deferred:
            await asyncio.sleep(0.01)
        assert store.write_failure is not None
        assert await store.find_response(T, "resp_1") is None
        conv = await store.get_conversation(T, "c0")
        assert conv is not None and conv.length == 0
    finally:
        await store.close()


async def test_past_max_deferred_room_waits_for_the_writer(tmp_path: FsPath) -> None:
    """A writer behind (its thread held here) leaves deferred writes pending; past
    `max_deferred` of them, `room()` (where a request waits before it is answered) returns
    only once the writer has brought them under the bound."""
    store = await _store(tmp_path, 4)
    store.max_deferred = 3
    started, release = hold(store, "_append")
    try:
        await store.room()  # nothing pending: at once
        for i in range(3):
            await store.append(T, f"c{i}", [make_page(0, f"turn of chat {i}")],
                               expected_version=0, new_length=1, state={}, durable=False)
        assert store._deferred == 3
        waiting = asyncio.ensure_future(store.room())
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the writer is held: no room
        release.set()
        await asyncio.wait_for(waiting, 5)
        assert store._deferred < 3
    finally:
        release.set()
        await store.close()


async def test_a_write_its_caller_stopped_waiting_for_still_holds_reads_behind_it(
    tmp_path: FsPath,
) -> None:
    """A request cancelled (its client gone) while its append is on the writer thread: a
    read of that conversation meanwhile waits for the append and reads what it stored,
    not the row from before it."""
    store = await _store(tmp_path, 2)
    started, release = hold(store, "_append")
    try:
        writing = asyncio.ensure_future(store.append(
            T, "c0", [make_page(0, "a question")], expected_version=0, new_length=1,
            state={"n": 1}))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        # Another conversation's write under way too: reads of conversations not being
        # written go to a reader thread then, not behind the writer.
        await store.append(T, "c1", [make_page(0, "another chat")], expected_version=0,
                           new_length=1, state={}, durable=False)
        store._send_deferred()
        reading = asyncio.ensure_future(store.get_conversation(T, "c0"))
        await asyncio.sleep(0.1)
        assert not reading.done()  # behind the append, still held
    finally:
        release.set()
    read = await asyncio.wait_for(reading, 10)
    assert read is not None and (read.version, read.length, read.state) == (1, 1, {"n": 1})
    assert store._writing == {} and store._writes == 0
    await store.close()
