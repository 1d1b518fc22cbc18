"""The SQLite schema, its migrations, and the settings of every connection.

Durability choice: WAL with `synchronous=NORMAL` by default. A commit has then been
written to the WAL file (the OS page cache) before `append` returns, so it survives
`kill -9` of the proxy at any moment; only an OS crash or power loss can drop the last
few commits. `?synchronous=full` makes every commit fsync the WAL as well (power-loss
safe, roughly one disk flush per append).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson

SCHEMA_VERSION = 3


def _log_rows_from_mutations(conn: sqlite3.Connection) -> None:
    """Version 2 keeps a turn's mutation records of one append in one row (a turn logs
    dozens, and a row each made them most of an append's cost): each old row becomes a
    row of one record, in the same order. Done here, not in SQL, so that times keep every
    digit (SQLite's JSON writes 15)."""
    rows = conn.execute(
        "SELECT seq, tenant, conv_id, turn, event, page_id, level, detail, at FROM mutations"
    )
    conn.executemany(
        "INSERT INTO mutation_log (seq, tenant, conv_id, turn, events) VALUES (?, ?, ?, ?, ?)",
        ((seq, tenant, conv_id, turn, orjson.dumps([record]))
         for seq, tenant, conv_id, turn, *record in rows),
    )


Step = str | Callable[[sqlite3.Connection], None]

# Steps (statements, or functions of the connection) run in order, inside one write
# transaction, by `migrate`. Index i upgrades a database at version i to version i + 1.
MIGRATIONS: list[list[Step]] = [
    [
        """CREATE TABLE conversations (
            tenant TEXT NOT NULL,
            conv_id TEXT NOT NULL,
            parent_id TEXT,
            fork_at INTEGER NOT NULL,
            length INTEGER NOT NULL,
            version INTEGER NOT NULL,
            state BLOB NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (tenant, conv_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX conversations_parent ON conversations (tenant, parent_id)"
        " WHERE parent_id IS NOT NULL",
        "CREATE INDEX conversations_updated ON conversations (updated_at)",
        # `id` is the rowid shared with page_fts.
        """CREATE TABLE pages (
            id INTEGER PRIMARY KEY,
            tenant TEXT NOT NULL,
            conv_id TEXT NOT NULL,
            page_id TEXT NOT NULL,
            prefix TEXT NOT NULL,
            anchor INTEGER NOT NULL,
            is_message INTEGER NOT NULL,
            kind TEXT NOT NULL,
            modality TEXT NOT NULL,
            chain_hash TEXT NOT NULL,
            body BLOB NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (tenant, conv_id, page_id)
        )""",
        "CREATE INDEX pages_anchor ON pages (tenant, conv_id, anchor)",
        """CREATE TABLE hashes (
            tenant TEXT NOT NULL,
            chain_hash TEXT NOT NULL,
            conv_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (tenant, chain_hash)
        ) WITHOUT ROWID""",
        "CREATE INDEX hashes_conv ON hashes (tenant, conv_id)",
        """CREATE TABLE sessions (
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            conv_id TEXT NOT NULL,
            PRIMARY KEY (tenant, name)
        ) WITHOUT ROWID""",
        "CREATE INDEX sessions_conv ON sessions (tenant, conv_id)",
        """CREATE TABLE mutations (
            seq INTEGER PRIMARY KEY,
            tenant TEXT NOT NULL,
            conv_id TEXT NOT NULL,
            turn INTEGER NOT NULL,
            event TEXT NOT NULL,
            page_id TEXT NOT NULL,
            level INTEGER,
            detail TEXT NOT NULL,
            at REAL NOT NULL
        )""",
        "CREATE INDEX mutations_turn ON mutations (tenant, conv_id, turn)",
        # One document per page: its search terms (proxy.vm.bm25.search_tokens), each
        # prefixed with its conversation's proxy.store.paths.term_prefix, so a
        # conversation's terms are postings of their own: a search reads only the searched
        # conversations' postings, and document frequencies are per conversation. `_` is a
        # token character so `msg_12` stays one term.
        """CREATE VIRTUAL TABLE page_fts USING fts5(
            terms, tokenize = "unicode61 remove_diacritics 0 tokenchars '_'"
        )""",
    ],
    [
        # `events`: the JSON list of [event, page_id, level, detail, at] of one turn, as
        # one append logged them (proxy.store.sqlite_queries.log_rows).
        """CREATE TABLE mutation_log (
            seq INTEGER PRIMARY KEY,
            tenant TEXT NOT NULL,
            conv_id TEXT NOT NULL,
            turn INTEGER NOT NULL,
            events BLOB NOT NULL
        )""",
        "CREATE INDEX mutation_log_turn ON mutation_log (tenant, conv_id, turn)",
        _log_rows_from_mutations,
        "DROP TABLE mutations",
    ],
    [
        # The proxy's Responses API ids: where each answer ended (previous_response_id).
        """CREATE TABLE responses (
            tenant TEXT NOT NULL,
            response_id TEXT NOT NULL,
            conv_id TEXT NOT NULL,
            length INTEGER NOT NULL,
            PRIMARY KEY (tenant, response_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX responses_conv ON responses (tenant, conv_id)",
    ],
]


def configure(conn: sqlite3.Connection, *, synchronous: str) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # A second process holding the write lock makes us wait, not fail.
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -32000")


def migrate(conn: sqlite3.Connection) -> int:
    """Create or upgrade the schema; safe when two processes start at once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {current} is newer than this proxy's"
                f" ({SCHEMA_VERSION}); upgrade vm-proxy"
            )
        for steps in MIGRATIONS[current:]:
            for step in steps:
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(conn)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


# The first bytes of every SQLite database file.
HEADER = b"SQLite format 3\x00"


def read_header(conn: sqlite3.Connection, file: Path) -> None:
    """Reads work, and `file` is a database: its header read from the file itself (a
    connection's cache would not notice the file overwritten)."""
    conn.execute("SELECT 1").fetchone()
    with file.open("rb") as opened:
        head = opened.read(len(HEADER))
    if head and head != HEADER:
        raise sqlite3.DatabaseError("file is not a database")
