"""How a SQLite store's calls reach its threads: one writer, a few readers, group commit.

SQLite calls block, so none runs on the event loop (proxy.store.sqlite explains which
thread a read goes to and why), but reads of a few index pages (`_read_small`), which take
less time than a thread's round trip. `SQLiteCalls` is that dispatch, kept apart from what
the store reads and writes: `_read` and `_write` run a function on a thread's connection
and await it, `_defer` queues a write nobody waits for, and `room` makes a request wait
while too many of those are pending (MAX_DEFERRED).

Deferred writes wait on the loop for up to DEFER_WINDOW_S before they go to the writer,
together: on a small machine a thread's wake-up (the writer's, then the loop's to settle
the jobs) costs more CPU than the append it runs, and a short chat's turn is one deferred
append (for a new conversation, after its deferred create). Whatever goes to the writer
thread after them (a read, a write) sends them first, so it still runs behind them;
closing the store sends them too.

Sent, they had best run while the loop waits: the writer thread and the event loop share
the GIL, and a group commit run beside the loop's requests makes both take turns at it
(the writer's every SQLite call gives it up and waits to get it back), which costs each
thread switches and CPU. `_catch_up` lets a request that may wait a moment do so for the
writes sent before it (proxy.store.sqlite: a whole-history request's new conversation),
when it is the only request the process is serving, so that the loop has nothing else to
run meanwhile, and none of the writes under way is heavy (a huge page: a request that
gives up the loop then may find the writer in a long call that holds the GIL).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any, TypeVar

from proxy.logs import log
from proxy.serving import SERVING
from proxy.store.base import StoreError
from proxy.store.sqlite_schema import configure
from proxy.store.sqlite_threads import Job, Lane

R = TypeVar("R")

# How long a deferred write may wait for others to go to the writer thread with it.
DEFER_WINDOW_S = 0.005
# What a read that meets a lock raises (SQLITE_BUSY, SQLITE_LOCKED): read on a thread.
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
# What a damaged file raises (SQLITE_CORRUPT, SQLITE_NOTADB).
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# At most this many deferred writes pending (queued, or sent and not committed): past it a
# request waits (`room`, before it is answered) until the writer has brought them under.
# The writer thread gets the GIL only when the event loop gives it up, so a loop kept busy
# by many clients' short chats starves it: with no bound its backlog grew to 47,000 writes
# in 12 s at 64 clients (about 4,000 more a second), and a memory-active turn, whose reads
# go behind its own deferred write, waited 2-10 s for all of them. The bound keeps that
# wait, the memory the backlog holds and what a kill could lose to a few hundred turns,
# and makes the load's clients wait instead: the rate measured is the rate stored.
MAX_DEFERRED = 512
# How long `_catch_up` waits at most: a group commit of a few short turns takes well under
# it; a write that takes longer is not waited for (benchmarks/stall.py).
CATCH_UP_S = 0.002


class _Connections:
    """One connection per thread, all closed together."""

    def __init__(self, path: FsPath, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._closed = False

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            configure(conn, synchronous=self._synchronous)
            self._local.conn = conn
            with self._guard:
                self._all.append(conn)
        return conn

    def on_loop(self) -> sqlite3.Connection:
        """The event loop thread's connection (SQLiteCalls._read_small): it only reads, and
        waits for no lock, from its first statement on (the writer's connection has put the
        database in WAL mode already)."""
        # Apart from `get`'s: that one waits for locks and writes.
        conn: sqlite3.Connection | None = getattr(self._local, "reading", None)
        if conn is None:
            if self._closed:
                raise sqlite3.ProgrammingError("the store is closed")
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout = 0")
                conn.execute("PRAGMA query_only = 1")
            except BaseException:
                conn.close()
                raise
            self._local.reading = conn
            with self._guard:
                self._all.append(conn)
        return conn

    def close_all(self) -> None:
        self._closed = True
        with self._guard:
            for conn in self._all:
                conn.close()
            self._all.clear()


class SQLiteCalls:
    def __init__(self, path: FsPath, *, synchronous: str, readers: int) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be normal, full or extra")
        self.write_failure: str | None = None
        # The first sign that the file is damaged (a read or write that found it so): the
        # health check says so from then on, as every request that reads it would fail.
        self.damage: str | None = None
        self._conns = _Connections(path, synchronous.upper())
        self._writer = Lane(1, "vm-sqlite-writer", self._call, group=self._group_commit)
        self._readers = (
            Lane(readers, "vm-sqlite-reader", self._call) if readers > 0 else self._writer
        )
        # Reads issued in this turn of the loop: (job, the conversation it reads, whether it
        # must see the deferred writes queued before it).
        self._pending: list[tuple[Job[Any], tuple[str, str] | None, bool]] = []
        self._writes = 0  # submitted to the writer thread and not finished
        self._writing: dict[tuple[str, str], int] = {}  # the same, by conversation
        self._deferred = 0  # of those, appends nobody waits for
        self._held_back: list[Job[Any]] = []  # deferred, not sent to the writer yet
        self._send_later: asyncio.TimerHandle | None = None
        # The newest deferred write sent to the writer thread: it commits after the others.
        self._newest_sent: asyncio.Future[Any] | None = None
        self.catch_up_s = CATCH_UP_S
        self.max_deferred = MAX_DEFERRED
        self._room_free = asyncio.Event()  # set while fewer than max_deferred are pending
        self._room_free.set()
        self._heavy = 0  # writes submitted as heavy and not finished

    async def close(self) -> None:
        self._send_deferred()
        self._readers.close()
        self._writer.close()
        self._conns.close_all()

    def _call(self, fn: Callable[..., R], args: tuple[Any, ...]) -> R:
        try:
            return fn(self._conns.get(), *args)
        except sqlite3.Error as exc:
            raise self.failed(exc) from exc

    def failed(self, exc: BaseException, what: str = "failed") -> StoreError:
        """The StoreError for `exc`, a damaged file noted (`damage`)."""
        code = getattr(exc, "sqlite_errorcode", None) or 0
        if code & 0xFF in _DAMAGED and self.damage is None:
            self.damage = str(exc)
        return StoreError(f"sqlite store {what}: {exc}")

    def _group_commit(self, jobs: list[Job[Any]]) -> None:
        """Run on the writer thread the jobs queued together, in one transaction: each write
        is a savepoint of it (proxy.store.sqlite_queries.transaction), so one that fails
        leaves the others; the reads among them read what the writes before them stored.
        Concurrent requests' writes so share one commit instead of paying one each."""
        conn = self._conns.get()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            self._writer.run_each(jobs)  # each on its own, as without grouping
            return
        try:
            self._run_group(conn, jobs)
        except Exception as exc:  # a bug: the writer thread lives on, the group is lost
            log.exception("a group commit of %d writes failed", len(jobs))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in jobs:
                job.result, job.error = None, self.failed(exc)
            return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in jobs:
                if job.error is None:
                    job.error = self.failed(exc, "failed to commit")

    def _run_group(self, conn: sqlite3.Connection, jobs: list[Job[Any]]) -> None:
        """Run a group's jobs inside its transaction, in order (the store may take some
        together: proxy.store.sqlite_batch)."""
        self._writer.run_each(jobs)

    async def _read(
        self, fn: Callable[..., R], *args: Any, of: tuple[str, str] | None = None,
        sees_deferred: bool = True,
    ) -> R:
        """Run `fn(conn, *args)` on a thread; `of`: the (tenant, conversation) it reads.

        A read of no one conversation waits for the deferred writes queued before it, unless
        `sees_deferred` is False: the caller needs nothing they store (a health check), or
        finds it elsewhere (the hash lookup, proxy.store.sqlite)."""
        loop = asyncio.get_running_loop()
        read: Job[R] = Job(fn, args, loop.create_future())
        self._pending.append((read, of, sees_deferred))
        if len(self._pending) == 1:
            # After the other tasks runnable now, which may add reads of their own.
            loop.call_soon(self._send_reads, loop)
        return await read.future

    async def _read_small(
        self, fn: Callable[..., R], *args: Any, of: tuple[str, str] | None = None
    ) -> R:
        """`_read` for a read of a few index pages that needs none of the deferred writes
        (the caller finds what they store elsewhere), run on the event loop's own connection
        when no write of `of` is under way: it takes tens of microseconds, less than a
        thread's round trip (the thread's wake-up, then the loop's: over 0.1 ms each on a
        small virtual machine, longer when the loop is busy). Under WAL a read waits for no
        writer; the connection waits for no lock either (busy_timeout 0): a read that meets
        one (a checkpoint of another process's, a recovery) goes to a thread instead."""
        if of not in self._writing:
            try:
                return fn(self._conns.on_loop(), *args)
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", None) or 0
                if code & 0xFF not in _BUSY:  # (an extended code's primary code)
                    raise self.failed(exc) from exc
            except sqlite3.Error as exc:
                raise self.failed(exc) from exc
        return await self._read(fn, *args, of=of, sees_deferred=False)

    def _send_reads(self, loop: asyncio.AbstractEventLoop) -> None:
        pending, self._pending = self._pending, []
        self._send_deferred()  # first: the reads that wait for them go behind them
        if self._writes == 0:
            self._submit(self._writer, loop, [read for read, _, _ in pending])
            return
        # A read of a conversation being written waits for the write and reads its result
        # (on the writer's warm cache); so does a read of no one conversation while deferred
        # writes are queued, as it may look for what they store. The others do not wait: a
        # 50 MB page being written must not hold up another client's short chat or /healthz.
        after: list[Job[Any]] = []
        now: list[Job[Any]] = []
        for read, of, sees_deferred in pending:
            waits = of in self._writing if of is not None else sees_deferred and self._deferred
            (after if waits else now).append(read)
        if after:
            self._submit(self._writer, loop, after)
        if now:
            self._submit(self._readers, loop, now)

    @staticmethod
    def _submit(lane: Lane, loop: asyncio.AbstractEventLoop, batch: list[Job[Any]]) -> None:
        try:
            lane.submit(loop, batch)
        except RuntimeError as exc:  # the store is closed
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(StoreError(f"sqlite store is closed: {exc}"))

    async def _write(
        self, fn: Callable[..., R], *args: Any, of: tuple[str, str] | None = None,
        heavy: bool = False,
    ) -> R:
        """Run `fn(conn, *args)` on the writer thread; `of`: the conversation it writes;
        `heavy`: it may keep the writer long (a huge page; see `_catch_up`)."""
        loop = asyncio.get_running_loop()
        write: Job[R] = Job(fn, args, loop.create_future())
        self._under_way(of, heavy)
        # Under way until the writer is done with it, even when its caller stops waiting
        # (a request cancelled by its client's disconnect): a read of the conversation
        # meanwhile still goes behind it, and reads what it stored. So the caller awaits a
        # shield of the job's future, which only the writer settles.
        write.future.add_done_callback(lambda done: self._finished(of, heavy, done))
        self._send_deferred()
        self._submit(self._writer, loop, [write])
        try:
            result = await asyncio.shield(write.future)
        except StoreError as exc:
            # Kept for ping(): a store that cannot write (disk full, read-only) is not
            # healthy, however well it still reads. The next write that succeeds clears it.
            self.write_failure = str(exc)
            raise
        self.write_failure = None
        return result

    def _under_way(self, of: tuple[str, str] | None, heavy: bool) -> None:
        self._writes += 1
        self._heavy += heavy
        if of is not None:
            self._writing[of] = self._writing.get(of, 0) + 1

    def _finished(
        self, of: tuple[str, str] | None, heavy: bool, done: asyncio.Future[Any]
    ) -> BaseException | None:
        """A write is no longer under way (`_under_way`): committed, failed or lost (its
        error, retrieved here: its caller may have stopped waiting for it)."""
        self._writes -= 1
        self._heavy -= heavy
        if of is not None:
            if self._writing[of] == 1:
                del self._writing[of]
            else:
                self._writing[of] -= 1
        return None if done.cancelled() else done.exception()

    def _defer(
        self, fn: Callable[..., Any], tenant: str, conv_id: str, *args: Any,
        heavy: bool = False,
    ) -> asyncio.Future[Any]:
        """Queue a write nobody waits for; the future tells when it is committed."""
        loop = asyncio.get_running_loop()
        write: Job[Any] = Job(fn, (tenant, conv_id, *args), loop.create_future())
        of = (tenant, conv_id)
        self._under_way(of, heavy)
        self._deferred += 1

        def done(future: asyncio.Future[Any]) -> None:
            error = self._finished(of, heavy, future)
            self._deferred -= 1
            if self._deferred < self.max_deferred and not self._room_free.is_set():
                self._room_free.set()
            if error is None:
                self.write_failure = None
                return
            self.write_failure = str(error)
            # Its messages are the client's to send again (a whole-history request), and
            # they are placed again then: a conversation found shorter than a placement
            # expects is placed anew (proxy.loop.conversations).
            log.error("a deferred write of conversation %s was lost: %s", conv_id, error)

        write.future.add_done_callback(done)
        self._held_back.append(write)
        if self._send_later is None:
            self._send_later = loop.call_later(DEFER_WINDOW_S, self._send_deferred)
        return write.future

    def _send_deferred(self) -> None:
        """Send the deferred writes held back to the writer thread, in one batch."""
        if self._send_later is not None:
            self._send_later.cancel()
            self._send_later = None
        if self._held_back:
            batch, self._held_back = self._held_back, []
            self._newest_sent = batch[-1].future
            self._submit(self._writer, batch[0].future.get_loop(), batch)

    async def room(self) -> None:
        """Until fewer than `max_deferred` deferred writes are pending (see MAX_DEFERRED)."""
        while self._deferred >= self.max_deferred:
            self._send_deferred()
            self._room_free.clear()
            await self._room_free.wait()

    async def _catch_up(self) -> None:
        """Until the deferred writes sent to the writer thread so far are committed (it runs
        them in order), for at most `catch_up_s`: so that they run while the caller waits,
        not beside the requests that follow; not when other requests are being served or a
        heavy write is under way (see above)."""
        newest = self._newest_sent
        if (newest is not None and not newest.done() and not self._heavy
                and SERVING.requests <= 1):
            await asyncio.wait((newest,), timeout=self.catch_up_s)
