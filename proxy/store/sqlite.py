"""`sqlite:///path.db`: the default store, one file, WAL mode, FTS5 BM25 search.

Threads (proxy.store.sqlite_calls). SQLite calls block, so none runs on the event loop:
every write goes to one writer thread with its own connection (SQLite admits one writer
at a time anyway), reads go to a small pool of reader threads, each with its own
connection, which under WAL read the last committed state without waiting for the writer.
`?readers=0` sends reads to the writer thread too. Reads issued in the same turn of the
event loop (a caller's `asyncio.gather`) travel together: one hop to a thread and one
wake-up of the loop for the lot, since on a small machine the hops, not the queries, are
most of a read (proxy.store.sqlite_threads). When no write is under way or queued, they
go to the writer thread: every commit empties the page cache of every other connection,
so the writer's is the warm one (a turn's search reads a good part of the index right
after the turn's first append). A read of a conversation that is being written also goes
there, behind the write, and so reads what the write stored: the loop issues the turn's
search as soon as the append of its question is issued (proxy.loop.early_search). Reads
of other conversations do not wait for writes. Two reads run on the event loop, on a
connection of its own: a new chat's (`open_root`) and a chained Responses request's
(`find_response`), index lookups of tens of microseconds that a thread's round trip took
several times longer than (and, under load, tens of milliseconds waiting for the GIL).

Concurrency. `lock()` serialises one conversation inside this process (an asyncio.Lock
per conversation). Across processes sharing the file, `append` runs as BEGIN IMMEDIATE
(the database write lock) and checks `expected_version` inside that transaction, so of two
processes appending on the same version one commits and the other gets VersionConflict
and retries from fresh state: nothing is lost or duplicated, and no cross-process lock
is needed. Durability: see proxy.store.sqlite_schema.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path as FsPath
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from proxy.store import sqlite_queries as q
from proxy.store.base import (
    Conversation,
    Path,
    SearchHit,
    StoreError,
    UnknownConversation,
    VersionConflict,
)
from proxy.store.codec import (
    LEAN_PREFIX,
    decode_state,
    encode_page,
    encode_state,
    is_heavy,
    page_search_tokens,
)
from proxy.store.locks import KeyedLocks
from proxy.store.paths import term_prefix
from proxy.store.sqlite_batch import run_group
from proxy.store.sqlite_names import SQLiteNames
from proxy.store.sqlite_schema import migrate, read_header
from proxy.store.sqlite_threads import Job
from proxy.vm.bm25 import query_terms
from proxy.vm.lean import is_lean
from proxy.vm.mutations import Clock, Mutation
from proxy.vm.pages import Modality, Page

R = TypeVar("R")


def parse_sqlite_url(url: str) -> tuple[FsPath, dict[str, str]]:
    """`sqlite:///rel.db` -> rel.db, `sqlite:////abs.db` -> /abs.db, plus query options."""
    parts = urlsplit(url)
    raw = parts.netloc + parts.path
    raw = raw[1:] if raw.startswith("/") else raw
    if not raw or raw == ":memory:":
        raise ValueError(f"{url!r} names no database file (use memory:// for a throwaway store)")
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    return FsPath(raw), options


# Below this much free space on the database's disk the store reports itself unhealthy
# (/healthz answers 503) before a write fails with "database or disk is full".
MIN_FREE_BYTES = 16 * 1024 * 1024
# The conversations whose fork and version a store keeps in memory (for deferred appends):
# about 200 bytes each; one not kept is appended durably, then kept again.
KNOWN_CONVERSATIONS = 65_536


def free_bytes(file: FsPath) -> int:
    """Free bytes on the disk holding `file` (a statvfs call: microseconds)."""
    return shutil.disk_usage(file.parent if file.parent.exists() else ".").free


class SQLiteStore(SQLiteNames):
    reads_wait = False
    def __init__(
        self, path: FsPath, *, synchronous: str = "NORMAL", readers: int = 2,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(path, synchronous=synchronous, readers=readers)
        self.file = path
        self._clock = clock
        self._locks = KeyedLocks()
        # Each conversation's (parent_id, fork_at), which never change: what a deferred
        # append needs to return the row it will write.
        self._forks: dict[tuple[str, str], tuple[str | None, int]] = {}
        # Each conversation's newest version this process has seen or will write (a
        # deferred append's): an append may be deferred only on that version. On an older
        # one it would fail unseen after returning a row of a version another write took,
        # a row no later version check tells from the one stored; so it is written
        # durably, and raises VersionConflict.
        self._versions: dict[tuple[str, str], int] = {}
        # Both hold the same conversations, at most `known_cap`: past it the older half
        # (by when first learned) is forgotten. A conversation not known is appended
        # durably (and learned again from the row written), never deferred. A read or
        # write that started before a forgetting teaches nothing: its row may predate a
        # deferred append whose version was forgotten with it.
        self.known_cap = KNOWN_CONVERSATIONS
        self._forgettings = 0
        # The chain hashes of the messages deferred appends will store, by (tenant, hash):
        # a hash lookup answers from these and reads the rest on a reader thread, instead of
        # waiting behind writes that may be slow (a huge page) for rows it may not need.
        self._deferred_hashes: dict[tuple[str, str], tuple[str, int]] = {}
        # The same for the response ids they will record (find_response).
        self._deferred_responses: dict[tuple[str, str], tuple[str, int]] = {}

    @classmethod
    async def open(cls, url: str, *, clock: Clock | None = None) -> SQLiteStore:
        path, options = parse_sqlite_url(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(
            path,
            synchronous=options.get("synchronous", "normal"),
            readers=int(options.get("readers", "2")),
            clock=clock or time.time,
        )
        try:
            await store._write(store._setup)
        except BaseException:
            await store.close()
            raise
        return store

    def _setup(self, conn: sqlite3.Connection) -> None:
        migrate(conn)

    async def ping(self) -> None:
        """Reads work, the file is a database (its header is read from the file: a
        connection's cache would not notice), nothing found it damaged, the last write did
        not fail, and the disk has room for more."""
        await self._read(read_header, self.file, sees_deferred=False)
        if self.damage is not None:
            raise StoreError(f"the database file is damaged: {self.damage}")
        if self.write_failure is not None:
            raise StoreError(f"the last write failed: {self.write_failure}")
        free = free_bytes(self.file)
        if free < MIN_FREE_BYTES:
            raise StoreError(f"{free} bytes free on the store's disk")

    # -- conversations -----------------------------------------------------------------------

    async def get_conversation(self, tenant: str, conv_id: str) -> Conversation | None:
        since = self._forgettings
        conv = await self._read(q.get_conversation, tenant, conv_id, of=(tenant, conv_id))
        return self._learn_fork(conv, since) if conv is not None else None

    def _learn_fork(self, conv: Conversation, since: int) -> Conversation:
        """Remember `conv`'s fork and version, read or written by a call that started when
        `_forgettings` was `since`."""
        if since != self._forgettings:
            return conv
        key = (conv.tenant, conv.conv_id)
        if key not in self._forks and len(self._forks) >= self.known_cap:
            self._forget_older_half()
        self._forks[key] = (conv.parent_id, conv.fork_at)
        if conv.version > self._versions.get(key, -1):  # (a read may answer after a write)
            self._versions[key] = conv.version
        return conv

    def _forget_older_half(self) -> None:
        self._forgettings += 1
        for key in list(itertools.islice(self._forks, (len(self._forks) + 1) // 2)):
            del self._forks[key]
            self._versions.pop(key, None)

    async def conversation_version(self, tenant: str, conv_id: str) -> int | None:
        # One index lookup: on the loop's own connection unless a write of the
        # conversation is under way, whose result it then waits for (_read_small).
        return await self._read_small(
            q.conversation_version, tenant, conv_id, of=(tenant, conv_id)
        )

    async def create_conversation(
        self, tenant: str, conv_id: str, *, parent_id: str | None = None, fork_at: int = 0,
        durable: bool = True,
    ) -> Conversation:
        key = (tenant, conv_id)
        since = self._forgettings
        if not durable:
            # Read first (a reader thread, or behind this process's writes of it): a row
            # stored already is returned as it is. Else the create is queued for the
            # writer (_defer_create).
            found = await self._read(q.get_conversation, tenant, conv_id, of=key)
            if found is not None:
                return self._learn_fork(found, since)
            # The deferred writes the read sent run now, while this first turn waits a
            # moment, not beside the chat's next turns (proxy.store.sqlite_calls): at one
            # client that was +70 us p50 and +100 us CPU a request (benchmarks/overhead.py).
            await self._catch_up()
            if key not in self._forks:  # no create of it issued meanwhile
                return self._defer_create(tenant, conv_id, parent_id, fork_at)
            since = self._forgettings
        return self._learn_fork(await self._write(
            self._create, tenant, conv_id, parent_id, fork_at, of=key
        ), since)

    async def open_root(
        self, tenant: str, conv_id: str, hashes: Sequence[str]
    ) -> Conversation | None:
        # As lookup_hashes, then create_conversation(durable=False), but read on the loop
        # (_read_small): a new chat's first turn waits for these reads, and three trips to
        # threads (the lookup's, the row's, the catch-up's) cost it 0.47 ms p50 at one
        # client (benchmarks/overhead.py --chat oneshot).
        queued = self._deferred_hashes
        if any((tenant, h) in queued for h in hashes):
            return None
        key = (tenant, conv_id)
        since = self._forgettings
        found, row = await self._read_small(q.root_reads, tenant, list(hashes), conv_id, of=key)
        # (Checked again: a read sent to a thread lets other requests queue appends.)
        if found or any((tenant, h) in queued for h in hashes):
            return None
        if row is not None:
            return self._learn_fork(row, since)
        if key in self._forks:  # a create of it issued meanwhile: it answers as it is
            return await self.create_conversation(tenant, conv_id, durable=False)
        return self._defer_create(tenant, conv_id, None, 0)

    def _defer_create(
        self, tenant: str, conv_id: str, parent_id: str | None, fork_at: int
    ) -> Conversation:
        """The row of a create queued for the writer, like the deferred append that follows
        it, which the row allows."""
        key = (tenant, conv_id)
        fork = fork_at if parent_id is not None else 0
        row = Conversation(tenant, conv_id, parent_id, fork, fork, 0, {}, self._clock())
        self._learn_fork(row, self._forgettings)
        written = self._defer(self._create_deferred, tenant, conv_id, parent_id, fork_at)
        written.add_done_callback(lambda done: self._settled(key, [], done))
        return row

    def _create(
        self, conn: sqlite3.Connection, tenant: str, conv_id: str, parent_id: str | None,
        fork_at: int,
    ) -> Conversation:
        return q.create_conversation(conn, tenant, conv_id, parent_id, fork_at, self._clock())

    def _create_deferred(
        self, conn: sqlite3.Connection, tenant: str, conv_id: str, parent_id: str | None,
        fork_at: int,
    ) -> Conversation:
        """`_create` for a create nobody waits for: the writer may make it together with
        others (proxy.store.sqlite_batch)."""
        return self._create(conn, tenant, conv_id, parent_id, fork_at)

    def _run_group(self, conn: sqlite3.Connection, jobs: list[Job[Any]]) -> None:
        run_group(conn, jobs, append=_OWN_APPEND, create=_OWN_CREATE,
                  run_each=self._writer.run_each, now=self._clock())

    async def path(self, tenant: str, conv_id: str) -> Path:
        return await self._read(q.path, tenant, conv_id, of=(tenant, conv_id))

    # -- writes ------------------------------------------------------------------------------

    async def append(
        self,
        tenant: str,
        conv_id: str,
        pages: Sequence[Page],
        *,
        expected_version: int,
        new_length: int,
        state: Mapping[str, Any] | None = None,
        mutations: Sequence[Mutation] = (),
        durable: bool = True,
        response_id: str | None = None,
    ) -> Conversation:
        key = (tenant, conv_id)
        fork = self._forks.get(key)
        heavy = is_heavy(pages)
        if durable or state is None or fork is None or self._versions[key] != expected_version:
            since = self._forgettings
            return self._learn_fork(await self._write(
                self._append, tenant, conv_id, pages, expected_version, new_length, state,
                mutations, response_id, of=(tenant, conv_id), heavy=heavy,
            ), since)
        # Queued for the writer's next group commit, not waited for: the row it will write
        # is known here. Reads of the conversation go behind it (_send_reads).
        hashes = [
            ((tenant, page.chain_hash), (conv_id, page.anchor)) for page in pages
            if page.chain_hash and (tenant, page.chain_hash) not in self._deferred_hashes
        ]
        self._deferred_hashes.update(hashes)
        answered = None if response_id is None else (tenant, response_id)
        if answered is not None:
            self._deferred_responses[answered] = (conv_id, new_length)
        self._versions[key] = expected_version + 1
        written = self._defer(self._append, tenant, conv_id, pages, expected_version,
                              new_length, state, mutations, response_id, heavy=heavy)
        # Forgotten once committed, when a reader finds them (or once lost).
        written.add_done_callback(lambda done: self._settled(key, hashes, done, answered))
        return Conversation(tenant, conv_id, fork[0], fork[1], new_length, expected_version + 1,
                            dict(state), self._clock())

    def _settled(
        self, conv: tuple[str, str], hashes: list[tuple[tuple[str, str], tuple[str, int]]],
        written: asyncio.Future[Any], answered: tuple[str, str] | None = None,
    ) -> None:
        for key, _ in hashes:
            self._deferred_hashes.pop(key, None)
        if answered is not None:
            self._deferred_responses.pop(answered, None)
        if written.cancelled() or written.exception() is not None:
            # Lost: callers hold a row at a version never stored, and the conversation's
            # version here is unknown. Its next append is durable, and raises
            # VersionConflict on that row, so the caller reads the conversation again.
            self._versions.pop(conv, None)
            self._forks.pop(conv, None)

    def _append(
        self, conn: sqlite3.Connection, tenant: str, conv_id: str, pages: Sequence[Page],
        expected_version: int, new_length: int, state: Mapping[str, Any] | None,
        mutations: Sequence[Mutation], response_id: str | None,
    ) -> Conversation:
        # Encode before taking the write lock: it is the slow part and needs no database.
        # A lean page is not indexed (nothing searches a conversation below
        # vm.activate_above); its derived page replaces it and is indexed then.
        scope = None if all(map(is_lean, pages)) else term_prefix(tenant, conv_id)
        rows = [
            (page, encode_page(page), None if scope is None or is_lean(page) else
             " ".join(scope + t for t in page_search_tokens(page)))
            for page in pages
        ]
        state_blob = encode_state(state) if state is not None else None
        with q.transaction(conn):
            fork = self._check_version(conn, tenant, conv_id, expected_version)
            q.add_pages(conn, tenant, conv_id, rows, LEAN_PREFIX)
            if response_id is not None:
                q.remember_response(conn, tenant, response_id, conv_id, new_length)
            return self._commit(
                conn, tenant, conv_id, fork, expected_version, new_length, state_blob, mutations,
                state,
            )

    async def put_pages(self, tenant: str, conv_id: str, pages: Sequence[Page]) -> int:
        if not pages:
            return 0
        scope = term_prefix(tenant, conv_id)
        rows = [(page, encode_page(page), " ".join(scope + t for t in page_search_tokens(page)))
                for page in pages]
        return int(await self._write(
            q.put_pages, tenant, conv_id, rows, of=(tenant, conv_id), heavy=is_heavy(pages)
        ))

    async def update_state(
        self,
        tenant: str,
        conv_id: str,
        *,
        expected_version: int,
        state: Mapping[str, Any],
        mutations: Sequence[Mutation] = (),
    ) -> Conversation:
        since = self._forgettings
        return self._learn_fork(await self._write(
            self._update_state, tenant, conv_id, expected_version, state, mutations,
            of=(tenant, conv_id),
        ), since)

    def _update_state(
        self, conn: sqlite3.Connection, tenant: str, conv_id: str, expected_version: int,
        state: Mapping[str, Any], mutations: Sequence[Mutation],
    ) -> Conversation:
        blob = encode_state(state)
        with q.transaction(conn):
            fork = self._check_version(conn, tenant, conv_id, expected_version)
            return self._commit(
                conn, tenant, conv_id, fork, expected_version, fork[2], blob, mutations, state
            )

    @staticmethod
    def _check_version(
        conn: sqlite3.Connection, tenant: str, conv_id: str, expected: int
    ) -> tuple[str | None, int, int]:
        """The row's (parent_id, fork_at, length), once its version is `expected`."""
        row = conn.execute(
            "SELECT version, parent_id, fork_at, length FROM conversations"
            " WHERE tenant = ? AND conv_id = ?",
            (tenant, conv_id),
        ).fetchone()
        if row is None:
            raise UnknownConversation(conv_id)
        if row[0] != expected:
            raise VersionConflict(f"{conv_id}: version {row[0]}, not {expected}")
        return row[1], row[2], row[3]

    def _commit(
        self, conn: sqlite3.Connection, tenant: str, conv_id: str,
        fork: tuple[str | None, int, int], version: int, length: int, state: bytes | None,
        mutations: Sequence[Mutation], decoded: Mapping[str, Any] | None,
    ) -> Conversation:
        """Log the mutations and write the row (`state` None: keep it; `decoded`: the
        state `state` encodes); the row written is known here, so it is returned without
        reading it back."""
        now = self._clock()
        if mutations:
            conn.executemany(
                "INSERT INTO mutation_log (tenant, conv_id, turn, events) VALUES (?, ?, ?, ?)",
                q.log_rows(tenant, conv_id, mutations, now),
            )
        if state is None:
            ((state,),) = conn.execute(
                "UPDATE conversations SET length = ?, version = version + 1, updated_at = ?"
                " WHERE tenant = ? AND conv_id = ? RETURNING state",
                (length, now, tenant, conv_id),
            ).fetchall()
        else:
            conn.execute(
                "UPDATE conversations SET length = ?, state = ?, version = version + 1,"
                " updated_at = ? WHERE tenant = ? AND conv_id = ?",
                (length, state, now, tenant, conv_id),
            )
        parent_id, fork_at, _ = fork
        return Conversation(
            tenant, conv_id, parent_id, fork_at, length, version + 1,
            decode_state(state) if decoded is None else dict(decoded), now,
        )

    # -- pages -------------------------------------------------------------------------------

    async def lookup_hashes(
        self, tenant: str, hashes: Sequence[str]
    ) -> dict[str, tuple[str, int]]:
        if not hashes:
            return {}
        # Taken before the read starts: a deferred append forgotten after this has
        # committed before the read, which then finds its rows.
        queued = self._deferred_hashes
        pending = {h: queued[(tenant, h)] for h in hashes if (tenant, h) in queued}
        found = await self._read(q.lookup_hashes, tenant, list(hashes), sees_deferred=False)
        return {**pending, **found}

    async def find_response(self, tenant: str, response_id: str) -> tuple[str, int] | None:
        # As lookup_hashes: a chained request does not wait for the commit of every
        # deferred write for an id that one of them records.
        queued = self._deferred_responses.get((tenant, response_id))
        if queued is not None:
            return queued
        return await self._read_small(q.find_response, tenant, response_id)

    async def get_pages(self, path: Path, page_ids: Sequence[str]) -> dict[str, Page]:
        if not page_ids:
            return {}
        return await self._read(q.get_pages, path, list(page_ids), of=(path.tenant, path.leaf))

    async def pages_in_range(
        self, path: Path, lo: int, hi: int, *, prefixes: Sequence[str] = ("msg",)
    ) -> list[Page]:
        return await self._read(
            q.pages_in_range, path, lo, hi, tuple(prefixes), of=(path.tenant, path.leaf)
        )

    async def search(
        self, path: Path, query: str, *, limit: int = 5, modality: Modality | None = None
    ) -> list[SearchHit]:
        terms = query_terms(query)
        if not terms or limit <= 0:
            return []
        return await self._read(
            q.search, path, terms, limit, modality, of=(path.tenant, path.leaf)
        )

    async def mutations(
        self, tenant: str, conv_id: str, *, turn: int | None = None
    ) -> list[Mutation]:
        return await self._read(q.mutations, tenant, conv_id, turn, of=(tenant, conv_id))

    def lock(self, tenant: str, conv_id: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold((tenant, conv_id))


# What sqlite_batch takes together: jobs of these, the store's own (not a replacement).
_OWN_APPEND = SQLiteStore._append
_OWN_CREATE = SQLiteStore._create_deferred
