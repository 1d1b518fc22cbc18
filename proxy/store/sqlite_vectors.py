"""Page vectors in the SQLite file, beside the pages (see proxy.store.vectors).

Two tables of their own, made with `IF NOT EXISTS` when embeddings are first used rather
than as a schema migration: a store that never embeds carries none of it. Triggers delete
a conversation's vectors and mark with the conversation (`gc`). Reads and writes go
through the store's own threads, so the worker's writes join the group commits of the
requests' appends and never run on the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from proxy.store.sqlite import SQLiteStore
from proxy.store.sqlite_queries import transaction
from proxy.store.vectors import VectorRow

_SETUP = (
    """CREATE TABLE IF NOT EXISTS page_vectors (
        tenant TEXT NOT NULL,
        conv_id TEXT NOT NULL,
        space TEXT NOT NULL,
        anchor INTEGER NOT NULL,
        page_id TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (tenant, conv_id, space, anchor, page_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS vector_marks (
        tenant TEXT NOT NULL,
        conv_id TEXT NOT NULL,
        space TEXT NOT NULL,
        done_below INTEGER NOT NULL,
        PRIMARY KEY (tenant, conv_id, space)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS vectors_gone AFTER DELETE ON conversations BEGIN
        DELETE FROM page_vectors WHERE tenant = old.tenant AND conv_id = old.conv_id;
        DELETE FROM vector_marks WHERE tenant = old.tenant AND conv_id = old.conv_id;
    END""",
)


class SQLiteVectors:
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    @classmethod
    async def open(cls, store: SQLiteStore) -> SQLiteVectors:
        await store._write(_setup)
        return cls(store)

    async def marks(self, tenant: str, conv_ids: Sequence[str], space: str) -> dict[str, int]:
        return await self._store._read(_marks, tenant, list(conv_ids), space)

    async def load(
        self, tenant: str, conv_id: str, space: str, from_anchor: int
    ) -> list[VectorRow]:
        return await self._store._read(_load, tenant, conv_id, space, from_anchor)

    async def save(
        self, tenant: str, conv_id: str, space: str, rows: Sequence[VectorRow], done_below: int
    ) -> None:
        await self._store._write(_save, tenant, conv_id, space, list(rows), done_below)

    async def pending(self, space: str, limit: int) -> list[tuple[str, str]]:
        return await self._store._read(_pending, space, limit)


def _setup(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        for statement in _SETUP:
            conn.execute(statement)


def _marks(
    conn: sqlite3.Connection, tenant: str, conv_ids: list[str], space: str
) -> dict[str, int]:
    places = ",".join("?" * len(conv_ids))
    rows = conn.execute(
        f"SELECT conv_id, done_below FROM vector_marks WHERE tenant = ? AND space = ?"
        f" AND conv_id IN ({places})",
        (tenant, space, *conv_ids),
    )
    return {conv_id: done for conv_id, done in rows}


def _load(
    conn: sqlite3.Connection, tenant: str, conv_id: str, space: str, from_anchor: int
) -> list[VectorRow]:
    rows = conn.execute(
        "SELECT page_id, anchor, vector FROM page_vectors WHERE tenant = ? AND conv_id = ?"
        " AND space = ? AND anchor >= ? ORDER BY anchor, page_id",
        (tenant, conv_id, space, from_anchor),
    )
    return [(page_id, anchor, bytes(vector)) for page_id, anchor, vector in rows]


def _save(
    conn: sqlite3.Connection, tenant: str, conv_id: str, space: str, rows: list[VectorRow],
    done_below: int,
) -> None:
    with transaction(conn):
        conn.executemany(
            "INSERT OR REPLACE INTO page_vectors (tenant, conv_id, space, anchor, page_id,"
            " vector) VALUES (?, ?, ?, ?, ?, ?)",
            [(tenant, conv_id, space, anchor, pid, blob) for pid, anchor, blob in rows],
        )
        conn.execute(
            "INSERT INTO vector_marks (tenant, conv_id, space, done_below) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant, conv_id, space) DO UPDATE SET done_below = excluded.done_below",
            (tenant, conv_id, space, done_below),
        )


def _pending(conn: sqlite3.Connection, space: str, limit: int) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT m.tenant, m.conv_id FROM vector_marks m JOIN conversations c"
        " ON c.tenant = m.tenant AND c.conv_id = m.conv_id"
        " WHERE m.space = ? AND c.length > m.done_below LIMIT ?",
        (space, limit),
    )
    return [(tenant, conv_id) for tenant, conv_id in rows]
