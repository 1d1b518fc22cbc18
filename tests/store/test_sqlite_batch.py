"""A group commit's short-chat writes made together (proxy.store.sqlite_batch): the same
rows as one by one, each append's own outcome, the order kept, and a fallback."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path as FsPath
from typing import Any

import pytest

from proxy.store import sqlite_batch
from proxy.store.base import Conversation, StoreError, UnknownConversation, VersionConflict
from proxy.store.sqlite import SQLiteStore
from proxy.store.sqlite_queries import get_conversation
from proxy.store.sqlite_threads import Job
from proxy.tokens import counter_for_model
from proxy.vm.ingest import Counters
from proxy.vm.lean import lean_page
from proxy.vm.pages import Page

from .conftest import FakeClock, count_commits, make_page

T = "tenant-a"
COUNTER = counter_for_model("gpt-4o-mini")


def lean(position: int, text: str, chain: str) -> Page:
    role = "user" if position % 2 == 0 else "assistant"
    return lean_page({"role": role, "content": text}, position, Counters(), COUNTER,
                     chain=chain, now=1_700_000_000.0 + position)


def turn(conv: str, first: int) -> list[Page]:
    """A short chat's turn: its question and answer, lean."""
    return [lean(first, f"question {first} of {conv}", f"{conv}-h{first}"),
            lean(first + 1, f"answer {first + 1} of {conv}", f"{conv}-h{first + 1}")]


async def open_store(path: FsPath, *, together: bool) -> SQLiteStore:
    store = await SQLiteStore.open(f"sqlite:///{path}", clock=FakeClock())
    if not together:  # every job alone, as before sqlite_batch
        store._run_group = lambda conn, jobs: store._writer.run_each(jobs)  # type: ignore[method-assign]
    return store


def jobs_of(store: SQLiteStore, calls: list[tuple[Any, tuple[Any, ...]]]) -> list[Job[Any]]:
    loop = asyncio.get_running_loop()
    return [Job(fn, args, loop.create_future()) for fn, args in calls]


def append_args(conv: str, pages: list[Page], expected: int, length: int) -> tuple[Any, ...]:
    return (T, conv, pages, expected, length, {"hash": pages[-1].chain_hash}, (), None)


def dump(path: FsPath) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        return {
            "conversations": conn.execute(
                "SELECT tenant, conv_id, parent_id, fork_at, length, version, state,"
                " created_at, updated_at FROM conversations ORDER BY 1, 2").fetchall(),
            "pages": conn.execute(
                "SELECT tenant, conv_id, page_id, prefix, anchor, is_message, kind, modality,"
                " chain_hash, body, created_at FROM pages ORDER BY 1, 2, 3").fetchall(),
            "hashes": conn.execute("SELECT * FROM hashes ORDER BY 1, 2").fetchall(),
        }


def group_commit(store: SQLiteStore, jobs: list[Job[Any]]) -> None:
    """The writer's group commit of `jobs`, run here (the writer thread is idle)."""
    store._group_commit(jobs)


def short_chats(store: SQLiteStore) -> list[tuple[Any, tuple[Any, ...]]]:
    """New chats created and their first turns, chats going on, a second turn of one of
    them in the same group, an append refused on its version, one to no conversation."""
    calls: list[tuple[Any, tuple[Any, ...]]] = []
    for i in range(4):
        calls.append((store._create_deferred, (T, f"new{i}", None, 0)))
        calls.append((store._append, append_args(f"new{i}", turn(f"new{i}", 0), 0, 2)))
    calls.append((store._append, append_args("old", turn("old", 2), 1, 4)))
    calls.append((store._append, append_args("new0", turn("new0", 2), 1, 4)))
    calls.append((store._append, append_args("old", turn("old", 4), 1, 6)))  # stale
    calls.append((store._append, append_args("nowhere", turn("nowhere", 0), 0, 2)))
    return calls


async def test_a_group_of_short_turns_stores_what_one_by_one_stores(tmp_path: FsPath) -> None:
    outcomes = {}
    for together in (True, False):
        path = tmp_path / f"{together}.db"
        store = await open_store(path, together=together)
        await store.create_conversation(T, "old")
        await store.append(T, "old", turn("old", 0), expected_version=0, new_length=2,
                           state={"hash": "old-h1"})
        jobs = jobs_of(store, short_chats(store))
        group_commit(store, jobs)
        outcomes[together] = [
            (type(job.error), job.result if isinstance(job.result, Conversation) and
             job.fn == store._append else None)
            for job in jobs
        ]
        await store.close()
    assert dump(tmp_path / "True.db") == dump(tmp_path / "False.db")
    assert outcomes[True] == outcomes[False]
    errors = [error for error, _ in outcomes[True]]
    assert errors[-2:] == [VersionConflict, UnknownConversation]
    assert errors[:-2] == [type(None)] * (len(errors) - 2)


async def test_the_stored_turns_read_back(tmp_path: FsPath) -> None:
    store = await open_store(tmp_path / "s.db", together=True)
    try:
        await store.create_conversation(T, "old")
        await store.append(T, "old", turn("old", 0), expected_version=0, new_length=2,
                           state={"hash": "old-h1"})
        group_commit(store, jobs_of(store, short_chats(store)))
        conv = await store.get_conversation(T, "new0")
        assert conv is not None and (conv.version, conv.length) == (2, 4)
        assert conv.state == {"hash": "new0-h3"}
        path = await store.path(T, "new0")
        pages = await store.pages_in_range(path, 0, 4)
        assert [p.text for p in pages] == [
            "question 0 of new0", "answer 1 of new0", "question 2 of new0", "answer 3 of new0"]
        assert await store.lookup_hashes(T, ["new0-h0", "new0-h3", "old-h3", "old-h5"]) == {
            "new0-h0": ("new0", 0), "new0-h3": ("new0", 3), "old-h3": ("old", 3)}
    finally:
        await store.close()


async def test_a_run_takes_the_same_statements_however_long(tmp_path: FsPath) -> None:
    counts = []
    for chats in (2, 40):
        store = await open_store(tmp_path / f"{chats}.db", together=True)
        statements: list[str] = []
        calls: list[tuple[Any, tuple[Any, ...]]] = []
        for i in range(chats):
            calls.append((store._create_deferred, (T, f"c{i}", None, 0)))
            calls.append((store._append, append_args(f"c{i}", turn(f"c{i}", 0), 0, 2)))
        jobs = jobs_of(store, calls)
        store._conns.get().set_trace_callback(statements.append)
        group_commit(store, jobs)
        store._conns.get().set_trace_callback(None)
        assert all(job.error is None for job in jobs)
        counts.append(len(statements))
        await store.close()
    assert counts[0] == counts[1] <= 10


async def test_the_writes_around_a_run_see_it_and_it_sees_them(tmp_path: FsPath) -> None:
    """A read in the group reads what the run before it wrote; a create queued after an
    append of its conversation is not taken before it."""
    store = await open_store(tmp_path / "s.db", together=True)
    try:
        calls: list[tuple[Any, tuple[Any, ...]]] = [
            (store._create_deferred, (T, "a", None, 0)),
            (store._append, append_args("a", turn("a", 0), 0, 2)),
            (store._append, append_args("b", turn("b", 0), 0, 2)),  # b is not created yet
            (store._create_deferred, (T, "b", None, 0)),
            (store._append, append_args("b", turn("b", 0), 0, 2)),
        ]
        jobs = jobs_of(store, calls)
        read = Job(get_conversation, (T, "a"), jobs[0].future.get_loop().create_future())
        jobs.insert(2, read)
        # A durable append of a page that is not lean runs alone, after the run before it.
        jobs.append(Job(store._append, (T, "a", [make_page(2, "not lean")], 1, 3, None, (),
                                        None), read.future.get_loop().create_future()))
        group_commit(store, jobs)
        assert isinstance(read.result, Conversation) and read.result.length == 2
        assert isinstance(jobs[3].error, UnknownConversation)
        assert [job.error for job in jobs[4:]] == [None, None, None]
        b = await store.get_conversation(T, "b")
        a = await store.get_conversation(T, "a")
        assert b is not None and (b.version, b.length) == (1, 2)
        assert a is not None and (a.version, a.length) == (2, 3)
    finally:
        await store.close()


async def test_a_run_that_fails_is_made_one_by_one(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(tmp_path / "s.db", together=True)
    written = sqlite_batch._write

    def failing(conn: sqlite3.Connection, *args: Any) -> Any:
        written(conn, *args)  # every statement made, then one fails: all rolled back
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_batch, "_write", failing)
    try:
        calls: list[tuple[Any, tuple[Any, ...]]] = []
        for i in range(3):
            calls.append((store._create_deferred, (T, f"c{i}", None, 0)))
            calls.append((store._append, append_args(f"c{i}", turn(f"c{i}", 0), 0, 2)))
        calls.append((store._append, append_args("c0", turn("c0", 0), 0, 2)))  # a retry
        jobs = jobs_of(store, calls)
        group_commit(store, jobs)
        assert [type(job.error) for job in jobs] == [type(None)] * 6 + [VersionConflict]
        for i in range(3):
            conv = await store.get_conversation(T, f"c{i}")
            assert conv is not None and (conv.version, conv.length) == (1, 2)
        with sqlite3.connect(store.file) as conn:
            assert conn.execute("SELECT count(*) FROM pages").fetchone() == (6,)
    finally:
        await store.close()


async def test_short_turns_sent_together_through_the_store(tmp_path: FsPath) -> None:
    """What a loaded server does: deferred creates and appends of many chats, queued
    while the writer is busy, then committed as one group, and read back."""
    store = await open_store(tmp_path / "s.db", together=True)
    groups = count_commits(store)
    try:
        for i in range(20):
            row = await store.open_root(T, f"c{i}", [f"c{i}-h0"])
            assert row is not None and row.version == 0
            leaf = await store.append(T, f"c{i}", turn(f"c{i}", 0), expected_version=0,
                                      new_length=2, state={"hash": f"c{i}-h1"}, durable=False)
            assert (leaf.version, leaf.length) == (1, 2)
        await asyncio.sleep(0.05)
        assert max(groups) == 40  # held back together (sqlite_calls.DEFER_WINDOW_S)
        for i in range(20):
            conv = await store.get_conversation(T, f"c{i}")
            assert conv is not None and (conv.version, conv.length) == (1, 2)
        assert len(await store.lookup_hashes(T, [f"c{i}-h1" for i in range(20)])) == 20
    finally:
        await store.close()


async def test_a_state_that_does_not_encode_fails_its_append_alone(tmp_path: FsPath) -> None:
    store = await open_store(tmp_path / "s.db", together=True)
    try:
        calls: list[tuple[Any, tuple[Any, ...]]] = []
        for i in range(3):
            calls.append((store._create_deferred, (T, f"c{i}", None, 0)))
            args = append_args(f"c{i}", turn(f"c{i}", 0), 0, 2)
            if i == 1:
                args = (*args[:5], {"n": 2**70}, *args[6:])  # past what orjson encodes
            calls.append((store._append, args))
        jobs = jobs_of(store, calls)
        group_commit(store, jobs)
        assert [job.error is None for job in jobs] == [True, True, True, False, True, True]
        for i, length in ((0, 2), (1, 0), (2, 2)):
            conv = await store.get_conversation(T, f"c{i}")  # the writer still answers
            assert conv is not None and conv.length == length
    finally:
        await store.close()


async def test_a_transaction_sqlite_rolled_back_fails_the_run_and_the_writer_goes_on(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt, an I/O error or a full disk may make SQLite roll the whole transaction
    back: the savepoint is gone with it, every write of the run fails, none is stored."""
    store = await open_store(tmp_path / "s.db", together=True)

    def rolled_back(conn: sqlite3.Connection, *args: Any) -> Any:
        conn.execute("ROLLBACK")  # as SQLite does before the statement raises
        raise sqlite3.OperationalError("disk I/O error")

    try:
        with monkeypatch.context() as patched:
            patched.setattr(sqlite_batch, "_write", rolled_back)
            calls: list[tuple[Any, tuple[Any, ...]]] = []
            for i in range(2):
                calls.append((store._create_deferred, (T, f"c{i}", None, 0)))
                calls.append((store._append, append_args(f"c{i}", turn(f"c{i}", 0), 0, 2)))
            jobs = jobs_of(store, calls)
            group_commit(store, jobs)
        assert all(isinstance(job.error, StoreError) for job in jobs)
        assert await store.get_conversation(T, "c0") is None
        # The writer thread is alive, and the same turns are stored when sent again.
        for i in range(2):
            assert await store.open_root(T, f"c{i}", [f"c{i}-h0"]) is not None
            await store.append(T, f"c{i}", turn(f"c{i}", 0), expected_version=0,
                               new_length=2, state={"hash": f"c{i}-h1"}, durable=False)
        conv = await store.get_conversation(T, "c1")
        assert conv is not None and (conv.version, conv.length) == (1, 2)
    finally:
        await store.close()


async def test_an_append_replaced_on_the_store_still_runs(tmp_path: FsPath) -> None:
    """A replacement of the store's `_append` (a test's fault, a hold) is called, not
    written around."""
    store = await open_store(tmp_path / "s.db", together=True)
    called: list[str] = []
    real = store._append

    def failing(conn: sqlite3.Connection, *args: Any) -> Any:
        called.append(args[1])
        raise sqlite3.OperationalError("injected")

    store._append = failing  # type: ignore[method-assign]
    try:
        calls: list[tuple[Any, tuple[Any, ...]]] = [
            (store._create_deferred, (T, "a", None, 0)),
            (store._create_deferred, (T, "b", None, 0)),
            (store._append, append_args("a", turn("a", 0), 0, 2)),
            (store._append, append_args("b", turn("b", 0), 0, 2)),
        ]
        jobs = jobs_of(store, calls)
        group_commit(store, jobs)
        assert called == ["a", "b"]
        assert [job.error is None for job in jobs] == [True, True, False, False]
    finally:
        store._append = real  # type: ignore[method-assign]
        await store.close()


def random_group(rng: random.Random, store: SQLiteStore, known: dict[str, int],
                 ) -> list[tuple[Any, tuple[Any, ...]]]:
    """Creates (new or not), lean appends on the right version or a stale one, retries of
    stored pages, pages without a chain hash, appends that are not lean, reads."""
    calls: list[tuple[Any, tuple[Any, ...]]] = []
    for _ in range(rng.randint(1, 30)):
        conv = f"c{rng.randrange(8)}"
        roll = rng.random()
        if roll < 0.2:
            calls.append((store._create_deferred, (T, conv, None, 0)))
            known.setdefault(conv, 0)
            continue
        if roll < 0.25:
            calls.append((get_conversation, (T, conv)))
            continue
        version = known.get(conv, 0) + rng.choice([0, 0, 0, 0, -1, 1])
        first = 2 * max(version, 0) - (2 if rng.random() < 0.1 else 0)  # a retry
        first = max(first, 0)
        pages = turn(conv, first)
        if rng.random() < 0.2:
            pages = [lean(first, "no hash", ""), *pages[1:]]
        if rng.random() < 0.1:
            pages = [make_page(first, "not lean"), make_page(first + 1, "not lean either")]
        calls.append((store._append, append_args(conv, pages, version, first + 2)))
        if conv in known and known[conv] == version:
            known[conv] = version + 1
    return calls


@pytest.mark.parametrize("chunk", [sqlite_batch.CHUNK, 3])
async def test_random_groups_store_what_one_by_one_stores(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(sqlite_batch, "CHUNK", chunk)  # 3: every statement in chunks
    stores = {together: await open_store(tmp_path / f"{together}.db", together=together)
              for together in (True, False)}
    rng = random.Random(7)
    known: dict[str, int] = {}
    try:
        for _ in range(40):
            calls = random_group(rng, stores[True], known)
            outcomes = []
            for store in stores.values():
                own = [(getattr(store, fn.__name__) if hasattr(fn, "__self__") else fn, args)
                       for fn, args in calls]
                jobs = jobs_of(store, own)
                group_commit(store, jobs)
                outcomes.append([
                    (type(job.error), job.result if job.fn == store._append else None)
                    for job in jobs
                ])
            assert outcomes[0] == outcomes[1]
        assert dump(tmp_path / "True.db") == dump(tmp_path / "False.db")
        assert len(dump(tmp_path / "True.db")["pages"]) > 20
    finally:
        for store in stores.values():
            await store.close()


async def test_a_group_that_fails_outright_is_lost_whole_and_the_writer_goes_on(
    tmp_path: FsPath,
) -> None:
    """Should running a group raise (a bug), its writes fail together, none stored, and the
    writer thread takes the next ones."""
    store = await open_store(tmp_path / "s.db", together=True)

    def broken(conn: sqlite3.Connection, jobs: list[Job[Any]]) -> None:
        store._writer.run_each(jobs[:1])  # one write made, then the bug
        raise RuntimeError("a bug")

    real = store._run_group
    store._run_group = broken  # type: ignore[method-assign]
    try:
        jobs = jobs_of(store, [(store._create_deferred, (T, "a", None, 0)),
                               (store._create_deferred, (T, "b", None, 0))])
        group_commit(store, jobs)
        assert all(isinstance(job.error, StoreError) for job in jobs)
        assert await store.get_conversation(T, "a") is None  # rolled back with the rest
        store._run_group = real  # type: ignore[method-assign]
        assert await store.open_root(T, "a", ["a-h0"]) is not None
        await store.append(T, "a", turn("a", 0), expected_version=0, new_length=2,
                           state={"hash": "a-h1"}, durable=False)
        conv = await store.get_conversation(T, "a")
        assert conv is not None and (conv.version, conv.length) == (1, 2)
    finally:
        await store.close()


async def test_a_page_sent_twice_in_a_run_is_stored_as_its_first_copy(tmp_path: FsPath) -> None:
    """The first copy without a chain hash, the second (an append overlapping it) with
    one: as one by one, the page is the first copy's, and no hash is stored for it."""
    dumps = []
    for together in (True, False):
        store = await open_store(tmp_path / f"{together}.db", together=together)
        first = [lean(0, "no hash", ""), lean(1, "answer", "c-h1")]
        again = [lean(0, "a hash", "c-h0"), lean(1, "answer", "c-h1"),
                 lean(2, "more", "c-h2"), lean(3, "answer", "c-h3")]
        jobs = jobs_of(store, [
            (store._create_deferred, (T, "c", None, 0)),
            (store._append, append_args("c", first, 0, 2)),
            (store._append, append_args("c", again, 1, 4)),
        ])
        group_commit(store, jobs)
        assert [job.error for job in jobs] == [None, None, None]
        await store.close()
        dumps.append(dump(tmp_path / f"{together}.db"))
    assert dumps[0] == dumps[1]
    assert [row[1] for row in dumps[0]["hashes"]] == ["c-h1", "c-h2", "c-h3"]
