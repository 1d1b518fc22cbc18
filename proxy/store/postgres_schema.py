"""The PostgreSQL schema and its migrations, applied on start under an advisory lock so two
replicas starting at once do not race each other.

Search: `page_terms` is an inverted index, one row per (page, distinct search term) with the
term prefixed by its conversation's proxy.store.paths.term_prefix, so a query reads only
the postings of its terms in the searched conversations, index-only (everything BM25 needs
is in the index); see proxy.store.postgres_search.
"""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]  # ships no type information

from proxy.store.paths import stable_key

SCHEMA_VERSION = 2

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE conversations (
            tenant text NOT NULL,
            conv_id text NOT NULL,
            parent_id text,
            fork_at integer NOT NULL,
            length integer NOT NULL,
            version bigint NOT NULL,
            state bytea NOT NULL,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            doc_count bigint NOT NULL DEFAULT 0,
            doc_len bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant, conv_id)
        )""",
        "CREATE INDEX conversations_parent ON conversations (tenant, parent_id)"
        " WHERE parent_id IS NOT NULL",
        "CREATE INDEX conversations_updated ON conversations (updated_at)",
        """CREATE TABLE pages (
            id bigserial PRIMARY KEY,
            tenant text NOT NULL,
            conv_id text NOT NULL,
            page_id text NOT NULL,
            prefix text NOT NULL,
            anchor integer NOT NULL,
            is_message boolean NOT NULL,
            kind text NOT NULL,
            modality text NOT NULL,
            chain_hash text NOT NULL,
            body bytea NOT NULL,
            created_at double precision NOT NULL,
            doc_len integer NOT NULL,
            UNIQUE (tenant, conv_id, page_id)
        )""",
        "CREATE INDEX pages_anchor ON pages (tenant, conv_id, anchor)",
        # Byte order (COLLATE "C"), so a conversation's postings form one key range.
        """CREATE TABLE page_terms (
            term text COLLATE "C" NOT NULL,
            page bigint NOT NULL,
            tenant text NOT NULL,
            conv_id text NOT NULL,
            anchor integer NOT NULL,
            modality text NOT NULL,
            tf integer NOT NULL,
            doc_len integer NOT NULL,
            PRIMARY KEY (term, page) INCLUDE (tenant, conv_id, anchor, modality, tf, doc_len)
        )""",
        """CREATE TABLE hashes (
            tenant text NOT NULL,
            chain_hash text NOT NULL,
            conv_id text NOT NULL,
            position integer NOT NULL,
            PRIMARY KEY (tenant, chain_hash)
        )""",
        "CREATE INDEX hashes_conv ON hashes (tenant, conv_id)",
        """CREATE TABLE sessions (
            tenant text NOT NULL,
            name text NOT NULL,
            conv_id text NOT NULL,
            PRIMARY KEY (tenant, name)
        )""",
        "CREATE INDEX sessions_conv ON sessions (tenant, conv_id)",
        """CREATE TABLE mutations (
            seq bigserial PRIMARY KEY,
            tenant text NOT NULL,
            conv_id text NOT NULL,
            turn integer NOT NULL,
            event text NOT NULL,
            page_id text NOT NULL,
            level integer,
            detail text NOT NULL,
            at double precision NOT NULL
        )""",
        "CREATE INDEX mutations_turn ON mutations (tenant, conv_id, turn)",
    ],
    [
        # The proxy's Responses API ids: where each answer ended (previous_response_id).
        """CREATE TABLE responses (
            tenant text NOT NULL,
            response_id text NOT NULL,
            conv_id text NOT NULL,
            length integer NOT NULL,
            PRIMARY KEY (tenant, response_id)
        )""",
        "CREATE INDEX responses_conv ON responses (tenant, conv_id)",
    ],
]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def migrate(conn: asyncpg.Connection, schema: str) -> int:
    """Create or upgrade `schema`; replicas starting together take turns."""
    lock_key = stable_key("vm-proxy:migrate", schema)
    ident = quote_ident(schema)
    await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
    try:
        async with conn.transaction():
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {ident}.meta (key text PRIMARY KEY, value text)"
            )
            raw = await conn.fetchval(
                f"SELECT value FROM {ident}.meta WHERE key = 'schema_version'"
            )
            current = int(raw) if raw is not None else 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"database schema version {current} is newer than this proxy's"
                    f" ({SCHEMA_VERSION}); upgrade vm-proxy"
                )
            await conn.execute(f"SET LOCAL search_path TO {ident}")
            for statements in MIGRATIONS[current:]:
                for statement in statements:
                    await conn.execute(statement)
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', $1)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                str(SCHEMA_VERSION),
            )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return SCHEMA_VERSION
