"""The SQL of the SQLite store: plain functions of a connection, run on its threads."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from proxy.store.base import Conversation, Path, SearchHit, UnknownConversation
from proxy.store.codec import decode_page, decode_state, id_prefix
from proxy.store.paths import (
    MAX_FORK_DEPTH,
    build_path,
    clipped_spans,
    nearest_the_leaf,
    span_bounds,
    term_prefix,
)
from proxy.vm.mutations import Mutation
from proxy.vm.pages import Modality, Page

# Well under SQLite's limit on bound parameters per statement.
CHUNK = 500


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction; inside a group commit's (proxy.store.sqlite), a savepoint of
    it, so that one write failing leaves the others of its group."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT job")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            raise
        conn.execute("RELEASE job")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def get_conversation(conn: sqlite3.Connection, tenant: str, conv_id: str) -> Conversation | None:
    row = conn.execute(
        "SELECT parent_id, fork_at, length, version, state, updated_at FROM conversations"
        " WHERE tenant = ? AND conv_id = ?",
        (tenant, conv_id),
    ).fetchone()
    if row is None:
        return None
    parent_id, fork_at, length, version, state, updated_at = row
    return Conversation(
        tenant, conv_id, parent_id, fork_at, length, version, decode_state(state), updated_at
    )


def conversation_version(conn: sqlite3.Connection, tenant: str, conv_id: str) -> int | None:
    row = conn.execute(
        "SELECT version FROM conversations WHERE tenant = ? AND conv_id = ?", (tenant, conv_id)
    ).fetchone()
    return None if row is None else int(row[0])


def path(conn: sqlite3.Connection, tenant: str, conv_id: str) -> Path:
    rows = conn.execute(
        "WITH RECURSIVE chain (conv_id, parent_id, fork_at, depth) AS ("
        " SELECT conv_id, parent_id, fork_at, 0 FROM conversations"
        "  WHERE tenant = ? AND conv_id = ?"
        " UNION ALL"
        " SELECT c.conv_id, c.parent_id, c.fork_at, chain.depth + 1"
        "  FROM conversations c JOIN chain ON c.tenant = ? AND c.conv_id = chain.parent_id"
        "  WHERE chain.depth < ?"
        ") SELECT conv_id, parent_id, fork_at FROM chain",
        (tenant, conv_id, tenant, MAX_FORK_DEPTH),
    ).fetchall()
    forks = {row[0]: (row[1], row[2]) for row in rows}
    return build_path(tenant, conv_id, forks.get)


def span_sql(
    spans: Sequence[tuple[str, int, int]], *, by_anchor: bool = True
) -> tuple[str, list[Any]]:
    """`(conv_id = ? AND anchor >= ? AND anchor < ?) OR ...` for the spans given.

    `by_anchor=False` writes `+p.anchor`, which keeps SQLite from choosing the anchor index
    (a scan of the whole span) over the (tenant, conv_id, page_id) key for lookups by id.
    """
    anchor = "p.anchor" if by_anchor else "+p.anchor"
    clause = f"(p.conv_id = ? AND {anchor} >= ? AND {anchor} < ?)"
    return "(" + " OR ".join(clause for _ in spans) + ")", [v for span in spans for v in span]


def create_conversation(
    conn: sqlite3.Connection, tenant: str, conv_id: str, parent_id: str | None, fork_at: int,
    now: float,
) -> Conversation:
    """Create the conversation (the existing row when there is one)."""
    with transaction(conn):
        existing = get_conversation(conn, tenant, conv_id)
        if existing is not None:
            return existing
        if parent_id is not None:
            # Forking is a use of the parent: touch it, as the other backends do.
            touched = conn.execute(
                "UPDATE conversations SET updated_at = max(updated_at, ?)"
                " WHERE tenant = ? AND conv_id = ?",
                (now, tenant, parent_id),
            )
            if touched.rowcount != 1:
                raise UnknownConversation(parent_id)
        fork = fork_at if parent_id is not None else 0
        conn.execute(
            "INSERT INTO conversations (tenant, conv_id, parent_id, fork_at, length,"
            " version, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (tenant, conv_id, parent_id, fork, fork, b"{}", now, now),
        )
    return Conversation(tenant, conv_id, parent_id, fork, fork, 0, {}, now)


def lookup_hashes(
    conn: sqlite3.Connection, tenant: str, hashes: list[str]
) -> dict[str, tuple[str, int]]:
    found: dict[str, tuple[str, int]] = {}
    for start in range(0, len(hashes), CHUNK):
        chunk = hashes[start : start + CHUNK]
        marks = ",".join("?" * len(chunk))
        for chain_hash, conv_id, position in conn.execute(
            "SELECT chain_hash, conv_id, position FROM hashes"
            f" WHERE tenant = ? AND chain_hash IN ({marks})",
            (tenant, *chunk),
        ):
            found[chain_hash] = (conv_id, position)
    return found


def root_reads(
    conn: sqlite3.Connection, tenant: str, hashes: list[str], conv_id: str
) -> tuple[dict[str, tuple[str, int]], Conversation | None]:
    """A new root conversation's reads, in one trip: which of `hashes` are stored, and the
    row of `conv_id`."""
    return lookup_hashes(conn, tenant, hashes), get_conversation(conn, tenant, conv_id)


def get_pages(conn: sqlite3.Connection, path: Path, page_ids: list[str]) -> dict[str, Page]:
    bounds = span_bounds(path)
    spans_sql, span_args = span_sql(bounds, by_anchor=False)
    # The conversations listed again outside the spans' OR: without them, on a path of two
    # spans or more, SQLite reads every page of the tenant by the anchor index instead of
    # looking each id up by the (tenant, conv_id, page_id) key.
    conv_ids = [conv_id for conv_id, _, _ in bounds]
    conv_marks = ",".join("?" * len(conv_ids))

    def rows() -> Iterator[tuple[str, str, bytes]]:
        for start in range(0, len(page_ids), CHUNK):
            chunk = page_ids[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            yield from conn.execute(
                f"SELECT p.conv_id, p.page_id, p.body FROM pages p WHERE p.tenant = ?"
                f" AND p.conv_id IN ({conv_marks}) AND p.page_id IN ({marks})"
                f" AND {spans_sql}",
                (path.tenant, *conv_ids, *chunk, *span_args),
            )

    return nearest_the_leaf(path, rows(), page_ids)


def pages_in_range(
    conn: sqlite3.Connection, path: Path, lo: int, hi: int, prefixes: tuple[str, ...]
) -> list[Page]:
    spans = clipped_spans(path, lo, hi)
    if not spans or not prefixes:
        return []
    spans_sql, span_args = span_sql(spans)
    marks = ",".join("?" * len(prefixes))
    rows = conn.execute(
        f"SELECT p.body FROM pages p WHERE p.tenant = ? AND p.prefix IN ({marks})"
        f" AND {spans_sql} ORDER BY p.anchor, p.is_message DESC, p.id",
        (path.tenant, *prefixes, *span_args),
    ).fetchall()
    return [decode_page(row[0]) for row in rows]


def fts_query(path: Path, terms: Sequence[str]) -> str:
    scopes = [term_prefix(path.tenant, span.conv_id) for span in path.spans]
    return " OR ".join(f'"{scope}{term}"' for scope in scopes for term in terms)


def search(
    conn: sqlite3.Connection, path: Path, terms: list[str], limit: int,
    modality: Modality | None,
) -> list[SearchHit]:
    """Best first. The terms' conversation prefixes already confine FTS5 to the path's
    conversations, so the index's own top rows are nearly always the answer: take a few
    more than asked, keep the visible ones, and only when fewer than `limit` survive while
    FTS5 had more (a parent's pages past the fork, another modality, a prefix shared by
    chance) rank again with the path checked on every match. Both ways are exact."""
    match = fts_query(path, terms)
    # A few spare rows: on a path of one conversation every match is visible; each spare
    # row costs a lookup and a body read.
    wanted = limit + 8
    # bm25() is negative, better is lower. The rows' bodies come along: reading them here
    # costs less than a second statement for the winners' (the bulk is the ranking).
    top = conn.execute(
        "SELECT t.score, p.tenant, p.conv_id, p.anchor, p.modality, p.body FROM ("
        " SELECT rowid, -bm25(page_fts) AS score FROM page_fts WHERE page_fts MATCH ?"
        " ORDER BY score DESC, rowid LIMIT ?"
        ") t JOIN pages p ON p.id = t.rowid ORDER BY t.score DESC, t.rowid",
        (match, wanted),
    ).fetchall()
    winners: list[SearchHit] = []
    for score, tenant, conv_id, anchor, page_modality, body in top:
        visible = tenant == path.tenant and path.owner_of(anchor) == conv_id
        if visible and (modality is None or page_modality == modality.value):
            winners.append(SearchHit(decode_page(body), score))
            if len(winners) == limit:
                return winners
    if len(top) == wanted:
        return search_checked(conn, path, match, limit, modality)
    return winners


def search_checked(
    conn: sqlite3.Connection, path: Path, match: str, limit: int, modality: Modality | None
) -> list[SearchHit]:
    spans_sql, span_args = span_sql(span_bounds(path))
    modality_sql = " AND p.modality = ?" if modality is not None else ""
    modality_args = [modality.value] if modality is not None else []
    # Rank ids alone, then read the winners' bodies: sorting whole rows would drag every
    # matching body through the sorter.
    rows = conn.execute(
        "SELECT b.body, r.score FROM ("
        " SELECT p.id, -bm25(page_fts) AS score"
        " FROM page_fts CROSS JOIN pages p ON p.id = page_fts.rowid"
        f" WHERE page_fts MATCH ? AND p.tenant = ? AND {spans_sql}{modality_sql}"
        " ORDER BY score DESC, p.id LIMIT ?"
        ") r JOIN pages b ON b.id = r.id ORDER BY r.score DESC, r.id",
        (match, path.tenant, *span_args, *modality_args, limit),
    ).fetchall()
    return [SearchHit(decode_page(body), score) for body, score in rows]


def log_rows(
    tenant: str, conv_id: str, mutations: Sequence[Mutation], now: float
) -> list[tuple[str, str, int, bytes]]:
    """The mutation_log rows of one append: a row per run of records of the same turn."""
    return [
        (tenant, conv_id, turn, orjson.dumps(
            [[m.event, m.page_id, m.level, m.detail, m.at or now] for m in records]))
        for turn, records in itertools.groupby(mutations, key=lambda m: m.turn)
    ]


def mutations(
    conn: sqlite3.Connection, tenant: str, conv_id: str, turn: int | None
) -> list[Mutation]:
    sql = "SELECT turn, events FROM mutation_log WHERE tenant = ? AND conv_id = ?"
    args: tuple[Any, ...] = (tenant, conv_id)
    if turn is not None:
        sql += " AND turn = ?"
        args += (turn,)
    return [
        Mutation(turn, event, page_id, level, detail, float(at))
        for turn, events in conn.execute(sql + " ORDER BY seq", args)
        for event, page_id, level, detail, at in orjson.loads(events)
    ]


def resolve_session(conn: sqlite3.Connection, tenant: str, name: str) -> str | None:
    row = conn.execute(
        "SELECT conv_id FROM sessions WHERE tenant = ? AND name = ?", (tenant, name)
    ).fetchone()
    return None if row is None else str(row[0])


def bind_session(conn: sqlite3.Connection, tenant: str, name: str, conv_id: str) -> None:
    conn.execute(
        "INSERT INTO sessions (tenant, name, conv_id) VALUES (?, ?, ?)"
        " ON CONFLICT (tenant, name) DO UPDATE SET conv_id = excluded.conv_id",
        (tenant, name, conv_id),
    )


def find_response(
    conn: sqlite3.Connection, tenant: str, response_id: str
) -> tuple[str, int] | None:
    row = conn.execute(
        "SELECT conv_id, length FROM responses WHERE tenant = ? AND response_id = ?",
        (tenant, response_id),
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def remember_response(
    conn: sqlite3.Connection, tenant: str, response_id: str, conv_id: str, length: int
) -> None:
    conn.execute(
        "INSERT INTO responses (tenant, response_id, conv_id, length) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (tenant, response_id) DO UPDATE"
        " SET conv_id = excluded.conv_id, length = excluded.length",
        (tenant, response_id, conv_id, length),
    )


# A page's row: the statement's head, one row's placeholders, and its values.
INSERT_PAGES = (
    "INSERT INTO pages (tenant, conv_id, page_id, prefix, anchor, is_message, kind, modality,"
    " chain_hash, body, created_at) VALUES "
)
PAGE_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def page_row(tenant: str, conv_id: str, page: Page, body: bytes) -> tuple[Any, ...]:
    return (tenant, conv_id, page.page_id, id_prefix(page.page_id), page.anchor,
            int(page.is_message), page.kind.value, page.modality.value, page.chain_hash,
            body, page.created_at)


def put_pages(
    conn: sqlite3.Connection, tenant: str, conv_id: str, rows: Sequence[tuple[Page, bytes, str]]
) -> int:
    """PageStore.put_pages: each (page, body, index terms) over the stored page of its id
    (its index row kept: same terms), else added and indexed."""
    with transaction(conn):
        if conversation_version(conn, tenant, conv_id) is None:
            return 0
        for page, body, terms in rows:
            replaced = conn.execute(
                "UPDATE pages SET body = ? WHERE tenant = ? AND conv_id = ? AND page_id = ?",
                (body, tenant, conv_id, page.page_id),
            ).rowcount
            if replaced:
                continue
            rowid = conn.execute(
                INSERT_PAGES + PAGE_VALUES, page_row(tenant, conv_id, page, body)
            ).lastrowid
            conn.execute("INSERT INTO page_fts (rowid, terms) VALUES (?, ?)", (rowid, terms))
    return len(rows)


def gc_batch(conn: sqlite3.Connection, older_than: float, batch: int = 100) -> int:
    """Delete up to `batch` stale conversations that no conversation forks from.

    Called until it returns 0: deleting a stale child makes its stale parent a leaf.
    """
    with transaction(conn):
        doomed = conn.execute(
            "SELECT c.tenant, c.conv_id FROM conversations c WHERE c.updated_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM conversations k"
            "  WHERE k.tenant = c.tenant AND k.parent_id = c.conv_id) LIMIT ?",
            (older_than, batch),
        ).fetchall()
        for key in doomed:
            conn.execute(
                "DELETE FROM page_fts WHERE rowid IN"
                " (SELECT id FROM pages WHERE tenant = ? AND conv_id = ?)",
                key,
            )
            for table in ("pages", "hashes", "mutation_log", "sessions", "responses",
                          "conversations"):
                conn.execute(f"DELETE FROM {table} WHERE tenant = ? AND conv_id = ?", key)
    return len(doomed)


def add_pages(
    conn: sqlite3.Connection, tenant: str, conv_id: str,
    rows: Sequence[tuple[Page, bytes, str | None]], lean_prefix: bytes,
) -> None:
    """An append's pages, each (page, body, index terms or None: not indexed), and their
    chain hashes. A page already stored (by an earlier, retried append) is left as it is,
    unless it is the lean page this one derives."""
    for page, body, terms in rows:
        cursor = conn.execute(
            INSERT_PAGES + PAGE_VALUES + " ON CONFLICT DO NOTHING",
            page_row(tenant, conv_id, page, body),
        )
        rowid = cursor.lastrowid
        if cursor.rowcount != 1:
            rowid = None if terms is None else replace_lean(
                conn, tenant, conv_id, page, body, lean_prefix)
            if rowid is None:
                continue
        if terms is not None:
            conn.execute("INSERT INTO page_fts (rowid, terms) VALUES (?, ?)", (rowid, terms))
        if page.chain_hash:
            conn.execute(
                "INSERT INTO hashes (tenant, chain_hash, conv_id, position)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (tenant, page.chain_hash, conv_id, page.anchor),
            )


def replace_lean(
    conn: sqlite3.Connection, tenant: str, conv_id: str, page: Page, body: bytes,
    lean_prefix: bytes,
) -> int | None:
    """Store `page` over the lean page of the same id (proxy.vm.lean); its rowid, or None
    when the stored page is not lean (then it is left as it is)."""
    row = conn.execute(
        "UPDATE pages SET body = ?, kind = ?, modality = ? WHERE tenant = ? AND conv_id = ?"
        " AND page_id = ? AND substr(body, 1, ?) = ? RETURNING id",
        (body, page.kind.value, page.modality.value, tenant, conv_id, page.page_id,
         len(lean_prefix), lean_prefix),
    ).fetchone()
    return None if row is None else int(row[0])
