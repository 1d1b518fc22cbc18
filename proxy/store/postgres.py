"""`postgresql://user@host:5432/db`: one database shared by any number of proxy replicas.

Options in the URL's query (removed before the rest goes to asyncpg): `schema` (default
`vm_proxy`; created on start), `pool_max` (default 10) and `lock_pool_max` (default 32).

Concurrency. `append` and `update_state` are single statements that lock the conversation
row (`FOR UPDATE`) and compare `expected_version` before writing anything, so a stale
writer gets VersionConflict and nothing of its append lands. `lock(tenant, conv)` holds a
session advisory lock on a hash of (schema, tenant, conversation) on a connection of its
own (a separate small pool, so lock holders cannot starve the query pool) for the whole
`async with`: requests of one conversation queue up across replicas, requests of other
conversations never wait on them. An in-process lock in front keeps a burst of requests
for one conversation from taking one pooled connection each. Releasing the connection
runs asyncpg's reset (`pg_advisory_unlock_all()`), so a lock never outlives its holder,
cancelled or not; a replica that dies loses its session and with it its locks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # ships no type information

from proxy.store.base import (
    Conversation,
    Path,
    SearchHit,
    StoreError,
    UnknownConversation,
    VersionConflict,
    WritesWhenAsked,
)
from proxy.store.codec import (
    decode_page,
    decode_state,
    encode_state,
)
from proxy.store.locks import KeyedLocks
from proxy.store.paths import (
    MAX_FORK_DEPTH,
    build_path,
    clipped_spans,
    nearest_the_leaf,
    stable_key,
)
from proxy.store.postgres_admin import PostgresAdminReads
from proxy.store.postgres_append import (
    APPEND_SQL,
    CONV_COLUMNS,
    PUT_SQL,
    append_args,
    mutation_columns,
    page_columns,
)
from proxy.store.postgres_schema import migrate, quote_ident
from proxy.store.postgres_search import SEARCH_SQL, search_args
from proxy.vm.bm25 import query_terms
from proxy.vm.mutations import Clock, Mutation
from proxy.vm.pages import Modality, Page

_OPTIONS = ("schema", "pool_max", "lock_pool_max")
# InternalClientError: a connection caught mid-operation by a server restart ("cannot switch
# to state 12; another operation is in progress"): a store failure like the others.
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)

_SPANS = "unnest($2::text[], $3::int[], $4::bigint[]) AS s (conv_id, lo, hi)"
_ON_SPAN = "p.conv_id = s.conv_id AND p.anchor >= s.lo AND p.anchor < s.hi"


def parse_postgres_url(url: str) -> tuple[str, dict[str, str]]:
    """The DSN for asyncpg, and our own options taken out of its query string."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {key: value for key, value in query if key in _OPTIONS}
    rest = [(key, value) for key, value in query if key not in _OPTIONS]
    return urlunsplit(parts._replace(query=urlencode(rest))), options


class _NoResetConnection(asyncpg.Connection):  # type: ignore[misc]
    """Query-pool connections hold no locks, cursors or listeners: skip the reset round trip
    asyncpg makes on every release."""

    def get_reset_query(self) -> str:
        return ""


class PostgresStore(PostgresAdminReads, WritesWhenAsked):
    reads_wait = True
    def __init__(
        self, pool: asyncpg.Pool, lock_pool: asyncpg.Pool, schema: str, *, clock: Clock
    ) -> None:
        self._pool = pool
        self._lock_pool = lock_pool
        self.schema = schema
        self._clock = clock
        self._local_locks = KeyedLocks()

    @classmethod
    async def open(cls, url: str, *, clock: Clock | None = None) -> PostgresStore:
        dsn, options = parse_postgres_url(url)
        schema = options.get("schema") or "vm_proxy"
        settings = {"search_path": quote_ident(schema)}
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=int(options.get("pool_max", "10")),
            server_settings=settings, connection_class=_NoResetConnection,
        )
        try:
            async with pool.acquire() as conn:
                await migrate(conn, schema)
            lock_pool = await asyncpg.create_pool(
                dsn, min_size=0, max_size=int(options.get("lock_pool_max", "32"))
            )
        except BaseException:
            await pool.close()
            raise
        return cls(pool, lock_pool, schema, clock=clock or time.time)

    async def close(self) -> None:
        await self._lock_pool.close()
        await self._pool.close()

    async def drop_schema(self) -> None:
        """Delete every table of this store (for tests and tear-downs)."""
        await self._pool.execute(f"DROP SCHEMA IF EXISTS {quote_ident(self.schema)} CASCADE")

    async def vacuum_analyze(self) -> None:
        """Refresh planner statistics and the visibility map (what autovacuum does in time);
        for benchmarks and after bulk imports."""
        for table in ("conversations", "pages", "page_terms", "hashes", "mutations"):
            await self._pool.execute(f"VACUUM ANALYZE {quote_ident(self.schema)}.{table}")

    async def ping(self) -> None:
        await self._fetchval("SELECT 1")

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return list(await self._pool.fetch(sql, *args))
        except _DB_ERRORS as exc:
            raise StoreError(f"postgres store failed: {exc}") from exc

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        try:
            return await self._pool.fetchrow(sql, *args)
        except _DB_ERRORS as exc:
            raise StoreError(f"postgres store failed: {exc}") from exc

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        try:
            return await self._pool.fetchval(sql, *args)
        except _DB_ERRORS as exc:
            raise StoreError(f"postgres store failed: {exc}") from exc

    # -- conversations -----------------------------------------------------------------------

    async def get_conversation(self, tenant: str, conv_id: str) -> Conversation | None:
        row = await self._fetchrow(
            f"SELECT {CONV_COLUMNS} FROM conversations WHERE tenant = $1 AND conv_id = $2",
            tenant, conv_id,
        )
        return None if row is None else _conversation(tenant, conv_id, row)

    async def conversation_version(self, tenant: str, conv_id: str) -> int | None:
        version = await self._fetchval(
            "SELECT version FROM conversations WHERE tenant = $1 AND conv_id = $2",
            tenant, conv_id,
        )
        return None if version is None else int(version)

    async def create_conversation(
        self, tenant: str, conv_id: str, *, parent_id: str | None = None, fork_at: int = 0,
        durable: bool = True,  # every create is committed before it returns
    ) -> Conversation:
        fork = fork_at if parent_id is not None else 0
        # Forking touches the parent: a gc deciding at that moment sees it as live (the row
        # lock makes gc re-check `updated_at`), so no child is left without its parent.
        row = await self._fetchrow(
            "WITH parent AS ("
            " UPDATE conversations SET updated_at = greatest(updated_at, $5)"
            " WHERE tenant = $1 AND conv_id = $3 RETURNING 1)"
            " INSERT INTO conversations (tenant, conv_id, parent_id, fork_at, length, version,"
            " state, created_at, updated_at)"
            " SELECT $1, $2, $3, $4, $4, 0, $6, $5, $5"
            " WHERE $3::text IS NULL OR EXISTS (SELECT 1 FROM parent)"
            f" ON CONFLICT DO NOTHING RETURNING {CONV_COLUMNS}",
            tenant, conv_id, parent_id, fork, self._clock(), b"{}",
        )
        if row is not None:
            return _conversation(tenant, conv_id, row)
        existing = await self.get_conversation(tenant, conv_id)
        if existing is None:
            raise UnknownConversation(parent_id or conv_id)
        return existing

    async def open_root(
        self, tenant: str, conv_id: str, hashes: Sequence[str]
    ) -> Conversation | None:
        # One round trip (a new chat's first request waits for it before it is relayed):
        # the hash lookup and the create in one statement. Its snapshot does not see a row
        # another transaction commits meanwhile, which the create then skips: read again.
        rows = await self._fetch(
            "WITH known AS ("
            " SELECT 1 FROM hashes WHERE tenant = $1 AND chain_hash = ANY ($3::text[])"
            " LIMIT 1"
            "), created AS ("
            " INSERT INTO conversations (tenant, conv_id, parent_id, fork_at, length, version,"
            " state, created_at, updated_at)"
            " SELECT $1, $2, NULL, 0, 0, 0, $5, $4, $4 WHERE NOT EXISTS (SELECT 1 FROM known)"
            f" ON CONFLICT DO NOTHING RETURNING {CONV_COLUMNS}"
            f") SELECT false, {CONV_COLUMNS} FROM created"
            f" UNION ALL SELECT false, {CONV_COLUMNS} FROM conversations"
            " WHERE tenant = $1 AND conv_id = $2 AND NOT EXISTS (SELECT 1 FROM known)"
            " AND NOT EXISTS (SELECT 1 FROM created)"
            " UNION ALL SELECT true, NULL, 0, 0, 0, NULL, 0 FROM known",
            tenant, conv_id, list(hashes), self._clock(), b"{}",
        )
        if rows:
            known, *row = rows[0]
            return None if known else _conversation(tenant, conv_id, row)
        existing = await self.get_conversation(tenant, conv_id)
        if existing is None:
            raise UnknownConversation(conv_id)
        return existing

    async def path(self, tenant: str, conv_id: str) -> Path:
        rows = await self._fetch(
            "WITH RECURSIVE chain (conv_id, parent_id, fork_at, depth) AS ("
            " SELECT conv_id, parent_id, fork_at, 0 FROM conversations"
            "  WHERE tenant = $1 AND conv_id = $2"
            " UNION ALL"
            " SELECT c.conv_id, c.parent_id, c.fork_at, chain.depth + 1"
            "  FROM conversations c JOIN chain ON c.tenant = $1 AND c.conv_id = chain.parent_id"
            "  WHERE chain.depth < $3"
            ") SELECT conv_id, parent_id, fork_at FROM chain",
            tenant, conv_id, MAX_FORK_DEPTH,
        )
        forks = {row[0]: (row[1], row[2]) for row in rows}
        return build_path(tenant, conv_id, forks.get)

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
        # Every append is committed before it returns; one that need not be durable yet
        # does not wait for the WAL flush (postgres_append).
        now = self._clock()
        row = await self._fetchrow(
            APPEND_SQL,
            *append_args(
                tenant, conv_id, pages, expected_version, mutations, new_length, state, now,
                response_id, durable,
            ),
        )
        if row is None:
            raise await self._why_not(tenant, conv_id, expected_version)
        return _conversation(tenant, conv_id, row)

    async def put_pages(self, tenant: str, conv_id: str, pages: Sequence[Page]) -> int:
        if not pages:
            return 0
        written = await self._fetchval(
            PUT_SQL, tenant, conv_id, *page_columns(tenant, conv_id, pages)
        )
        return int(written or 0)

    async def update_state(
        self,
        tenant: str,
        conv_id: str,
        *,
        expected_version: int,
        state: Mapping[str, Any],
        mutations: Sequence[Mutation] = (),
    ) -> Conversation:
        now = self._clock()
        row = await self._fetchrow(
            "WITH cur AS ("
            " SELECT version FROM conversations WHERE tenant = $1 AND conv_id = $2 FOR UPDATE"
            "), logged AS ("
            " INSERT INTO mutations (tenant, conv_id, turn, event, page_id, level, detail, at)"
            " SELECT $1, $2, m.turn, m.event, m.page_id, m.level, m.detail, m.at"
            " FROM unnest($4::int[], $5::text[], $6::text[], $7::int[], $8::text[],"
            "  $9::float8[]) WITH ORDINALITY AS m (turn, event, page_id, level, detail, at, ord)"
            " WHERE (SELECT version FROM cur) = $3 ORDER BY m.ord"
            ") UPDATE conversations SET version = version + 1, state = $10, updated_at = $11"
            " WHERE tenant = $1 AND conv_id = $2 AND version = $3"
            f" AND (SELECT version FROM cur) = $3 RETURNING {CONV_COLUMNS}",
            tenant, conv_id, expected_version, *mutation_columns(mutations, now),
            encode_state(state), now,
        )
        if row is None:
            raise await self._why_not(tenant, conv_id, expected_version)
        return _conversation(tenant, conv_id, row)

    async def _why_not(self, tenant: str, conv_id: str, expected: int) -> Exception:
        version = await self.conversation_version(tenant, conv_id)
        if version is None:
            return UnknownConversation(conv_id)
        return VersionConflict(f"{conv_id}: version {version}, not {expected}")

    # -- pages -------------------------------------------------------------------------------

    async def lookup_hashes(
        self, tenant: str, hashes: Sequence[str]
    ) -> dict[str, tuple[str, int]]:
        if not hashes:
            return {}
        rows = await self._fetch(
            "SELECT chain_hash, conv_id, position FROM hashes"
            " WHERE tenant = $1 AND chain_hash = ANY ($2::text[])",
            tenant, list(hashes),
        )
        return {row[0]: (row[1], row[2]) for row in rows}

    async def get_pages(self, path: Path, page_ids: Sequence[str]) -> dict[str, Page]:
        if not page_ids:
            return {}
        # By the unique key alone (a plan that stays right when the statement is cached);
        # visibility is checked here.
        rows = await self._fetch(
            "SELECT conv_id, page_id, anchor, body FROM pages"
            " WHERE tenant = $1 AND conv_id = ANY ($2::text[]) AND page_id = ANY ($3::text[])",
            path.tenant, [span.conv_id for span in path.spans], list(page_ids),
        )
        visible = (
            (conv_id, page_id, body)
            for conv_id, page_id, anchor, body in rows
            if path.owner_of(anchor) == conv_id
        )
        return nearest_the_leaf(path, visible, page_ids)

    async def pages_in_range(
        self, path: Path, lo: int, hi: int, *, prefixes: Sequence[str] = ("msg",)
    ) -> list[Page]:
        spans = clipped_spans(path, lo, hi)
        if not spans or not prefixes:
            return []
        rows = await self._fetch(
            f"SELECT p.body FROM pages p JOIN {_SPANS} ON {_ON_SPAN}"
            " WHERE p.tenant = $1 AND p.prefix = ANY ($5::text[])"
            " ORDER BY p.anchor, p.is_message DESC, p.id",
            *_span_args(path, spans), list(prefixes),
        )
        return [decode_page(row[0]) for row in rows]

    async def search(
        self, path: Path, query: str, *, limit: int = 5, modality: Modality | None = None
    ) -> list[SearchHit]:
        terms = query_terms(query)
        if not terms or limit <= 0:
            return []
        rows = await self._fetch(SEARCH_SQL, *search_args(path, terms, limit, modality))
        return [SearchHit(decode_page(body), float(score)) for body, score in rows]

    async def mutations(
        self, tenant: str, conv_id: str, *, turn: int | None = None
    ) -> list[Mutation]:
        rows = await self._fetch(
            "SELECT turn, event, page_id, level, detail, at FROM mutations"
            " WHERE tenant = $1 AND conv_id = $2 AND ($3::int IS NULL OR turn = $3)"
            " ORDER BY seq",
            tenant, conv_id, turn,
        )
        return [Mutation(*row) for row in rows]

    def lock(self, tenant: str, conv_id: str) -> AbstractAsyncContextManager[None]:
        return self._hold(tenant, conv_id)

    @asynccontextmanager
    async def _hold(self, tenant: str, conv_id: str) -> AsyncIterator[None]:
        key = stable_key("vm-proxy:conversation", self.schema, tenant, conv_id)
        async with self._local_locks.hold((tenant, conv_id)):
            try:
                conn = await self._lock_pool.acquire()
            except _DB_ERRORS as exc:
                raise StoreError(f"postgres lock failed: {exc}") from exc
            try:
                await conn.execute("SELECT pg_advisory_lock($1)", key)
                yield
            finally:
                # The pool's reset on release runs pg_advisory_unlock_all(), cancelled or not.
                await self._lock_pool.release(conn)

    # -- sessions and retention --------------------------------------------------------------

    async def resolve_session(self, tenant: str, name: str) -> str | None:
        conv_id = await self._fetchval(
            "SELECT conv_id FROM sessions WHERE tenant = $1 AND name = $2", tenant, name
        )
        return None if conv_id is None else str(conv_id)

    async def bind_session(self, tenant: str, name: str, conv_id: str) -> None:
        await self._fetchval(
            "INSERT INTO sessions (tenant, name, conv_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (tenant, name) DO UPDATE SET conv_id = excluded.conv_id",
            tenant, name, conv_id,
        )

    async def find_response(self, tenant: str, response_id: str) -> tuple[str, int] | None:
        row = await self._fetchrow(
            "SELECT conv_id, length FROM responses WHERE tenant = $1 AND response_id = $2",
            tenant, response_id,
        )
        return None if row is None else (str(row[0]), int(row[1]))

    async def remember_response(
        self, tenant: str, response_id: str, conv_id: str, length: int
    ) -> None:
        await self._fetchval(
            "INSERT INTO responses (tenant, response_id, conv_id, length)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, response_id) DO UPDATE"
            " SET conv_id = excluded.conv_id, length = excluded.length",
            tenant, response_id, conv_id, length,
        )

    async def gc(self, older_than: float) -> int:
        """Delete stale leaves in batches until none is left (a deleted stale child makes
        its stale parent a leaf)."""
        deleted = 0
        while True:
            count = await self._fetchval(
                "WITH doomed AS ("
                " SELECT c.tenant, c.conv_id FROM conversations c WHERE c.updated_at < $1"
                " AND NOT EXISTS (SELECT 1 FROM conversations k"
                "  WHERE k.tenant = c.tenant AND k.parent_id = c.conv_id)"
                " LIMIT 100 FOR UPDATE SKIP LOCKED"
                "), prefixes AS ("
                " SELECT tenant, conv_id, substr(encode(sha256(convert_to("
                "  tenant || chr(31) || conv_id, 'UTF8')), 'hex'), 1, 8) AS prefix FROM doomed"
                # A conversation's postings are the key range of its term prefix.
                "), d0 AS (DELETE FROM page_terms t USING prefixes d"
                "  WHERE t.term >= d.prefix AND t.term < d.prefix || chr(1114111)"
                "  AND t.tenant = d.tenant AND t.conv_id = d.conv_id"
                "), d1 AS (DELETE FROM pages t USING doomed d"
                "  WHERE t.tenant = d.tenant AND t.conv_id = d.conv_id"
                "), d2 AS (DELETE FROM hashes t USING doomed d"
                "  WHERE t.tenant = d.tenant AND t.conv_id = d.conv_id"
                "), d3 AS (DELETE FROM mutations t USING doomed d"
                "  WHERE t.tenant = d.tenant AND t.conv_id = d.conv_id"
                "), d4 AS (DELETE FROM sessions t USING doomed d"
                "  WHERE t.tenant = d.tenant AND t.conv_id = d.conv_id"
                "), d6 AS (DELETE FROM responses t USING doomed d"
                "  WHERE t.tenant = d.tenant AND t.conv_id = d.conv_id"
                "), d5 AS (DELETE FROM conversations t USING doomed d"
                "  WHERE t.tenant = d.tenant AND t.conv_id = d.conv_id RETURNING 1"
                ") SELECT count(*) FROM d5",
                older_than,
            )
            if not count:
                return deleted
            deleted += int(count)


def _conversation(tenant: str, conv_id: str, row: asyncpg.Record) -> Conversation:
    parent_id, fork_at, length, version, state, updated_at = row
    return Conversation(
        tenant, conv_id, parent_id, fork_at, length, int(version), decode_state(state),
        updated_at,
    )


def _span_args(path: Path, spans: Sequence[tuple[str, int, int]]) -> list[Any]:
    return [
        path.tenant,
        [conv_id for conv_id, _, _ in spans],
        [lo for _, lo, _ in spans],
        [hi for _, _, hi in spans],
    ]
