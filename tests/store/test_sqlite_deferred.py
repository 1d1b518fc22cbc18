"""SQLite deferred writes (appends nobody waits for) go to the writer thread together, in
one transaction, and whatever follows them on that thread still runs behind them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path as FsPath
from typing import Any

import pytest

from proxy.store.base import VersionConflict
from proxy.store.sqlite import SQLiteStore
from proxy.store.sqlite_threads import Lane

from .conftest import make_page

T = "tenant-a"


async def _store(tmp_path: FsPath, conversations: int) -> SQLiteStore:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/deferred.db")
    for i in range(conversations):
        await store.create_conversation(T, f"c{i}")
    return store


def _count_commits(store: SQLiteStore) -> list[int]:
    """The number of jobs of every group the writer commits from now on."""
    groups: list[int] = []
    group = store._group_commit

    def counted(jobs: list[Any]) -> None:
        groups.append(len(jobs))
        group(jobs)

    store._writer._group = counted
    return groups


async def test_deferred_appends_reach_the_writer_together(tmp_path: FsPath) -> None:
    store = await _store(tmp_path, 5)
    sent: list[int] = []
    submit = Lane.submit

    def counted(lane: Lane, loop: asyncio.AbstractEventLoop, batch: list[Any]) -> None:
        if lane is store._writer:
            sent.append(len(batch))
        submit(lane, loop, batch)

    try:
        groups = _count_commits(store)
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


async def test_a_deferred_response_id_is_found_without_waiting_for_the_writer(
    tmp_path: FsPath,
) -> None:
    """A chained request right after a whole-history one finds the id its deferred append
    will record at once, as the hash lookup finds its hashes; an id not among them is read
    on a reader thread, not behind the deferred writes on the writer's."""
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
        assert sent == [("writer", 2), ("reader", 1)]
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
