"""Page vectors in PostgreSQL, beside the pages (see proxy.store.vectors): a side table of
float32 bytea rows and a mark per conversation, both deleted with their conversation
(foreign keys, ON DELETE CASCADE). Scoring is exact, in each replica's process, over the
conversation's vectors it caches and tops up from the mark (proxy.store.vectors).

pgvector: `CREATE EXTENSION IF NOT EXISTS vector` is tried at start-up and whether it
succeeded is logged and kept in `pgvector`; the scoring stays in process either way (at a
conversation's scale an exact product over its cached rows is faster than a round trip),
so the extension is not required and not used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg  # type: ignore[import-untyped]

from proxy.store.base import StoreError
from proxy.store.paths import stable_key
from proxy.store.postgres import PostgresStore
from proxy.store.vectors import VectorRow

log = logging.getLogger("vm_proxy.store")

_SETUP = (
    """CREATE TABLE IF NOT EXISTS vector_marks (
        tenant text NOT NULL,
        conv_id text NOT NULL,
        space text NOT NULL,
        done_below integer NOT NULL,
        PRIMARY KEY (tenant, conv_id, space),
        FOREIGN KEY (tenant, conv_id) REFERENCES conversations ON DELETE CASCADE
    )""",
    """CREATE TABLE IF NOT EXISTS page_vectors (
        tenant text NOT NULL,
        conv_id text NOT NULL,
        space text NOT NULL,
        anchor integer NOT NULL,
        page_id text NOT NULL,
        vector bytea NOT NULL,
        PRIMARY KEY (tenant, conv_id, space, anchor, page_id),
        FOREIGN KEY (tenant, conv_id) REFERENCES conversations ON DELETE CASCADE
    )""",
)


class PostgresVectors:
    def __init__(self, store: PostgresStore, *, pgvector: bool) -> None:
        self._pool = store._pool
        self.pgvector = pgvector

    @classmethod
    async def open(cls, store: PostgresStore) -> PostgresVectors:
        try:
            async with store._pool.acquire() as conn, conn.transaction():
                # Replicas starting together take turns creating the tables.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1)", stable_key("vm-proxy:vectors", store.schema)
                )
                for statement in _SETUP:
                    await conn.execute(statement)
            pgvector = await _try_pgvector(store)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"postgres store cannot keep vectors: {exc}") from exc
        log.info("page vectors: exact scoring in process (pgvector %s)",
                 "available, not needed" if pgvector else "not installed")  # fmt: skip
        return cls(store, pgvector=pgvector)

    async def marks(self, tenant: str, conv_ids: Sequence[str], space: str) -> dict[str, int]:
        rows = await self._fetch(
            "SELECT conv_id, done_below FROM vector_marks WHERE tenant = $1 AND space = $2"
            " AND conv_id = ANY($3::text[])",
            tenant, space, list(conv_ids),
        )  # fmt: skip
        return {row["conv_id"]: row["done_below"] for row in rows}

    async def load(
        self, tenant: str, conv_id: str, space: str, from_anchor: int
    ) -> list[VectorRow]:
        rows = await self._fetch(
            "SELECT page_id, anchor, vector FROM page_vectors WHERE tenant = $1"
            " AND conv_id = $2 AND space = $3 AND anchor >= $4 ORDER BY anchor, page_id",
            tenant, conv_id, space, from_anchor,
        )  # fmt: skip
        return [(row["page_id"], row["anchor"], bytes(row["vector"])) for row in rows]

    async def save(
        self, tenant: str, conv_id: str, space: str, rows: Sequence[VectorRow], done_below: int
    ) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.executemany(
                    "INSERT INTO page_vectors (tenant, conv_id, space, anchor, page_id, vector)"
                    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    [(tenant, conv_id, space, a, pid, blob) for pid, a, blob in rows],
                )
                await conn.execute(
                    "INSERT INTO vector_marks (tenant, conv_id, space, done_below)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, conv_id, space)"
                    " DO UPDATE SET done_below = GREATEST(vector_marks.done_below,"
                    " excluded.done_below)",
                    tenant, conv_id, space, done_below,
                )  # fmt: skip
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"postgres store failed to save vectors: {exc}") from exc

    async def pending(self, space: str, limit: int) -> list[tuple[str, str]]:
        rows = await self._fetch(
            "SELECT m.tenant, m.conv_id FROM vector_marks m JOIN conversations c"
            " USING (tenant, conv_id) WHERE m.space = $1 AND c.length > m.done_below LIMIT $2",
            space, limit,
        )  # fmt: skip
        return [(row["tenant"], row["conv_id"]) for row in rows]

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        try:
            return list(await self._pool.fetch(sql, *args))
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"postgres store failed: {exc}") from exc


async def _try_pgvector(store: PostgresStore) -> bool:
    try:
        async with store._pool.acquire() as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except asyncpg.PostgresError:
        return False
    return True
