"""The SQLite store's reads for people (the admin API, `vm-proxy inspect`): across tenants,
paged, never on the path of a turn."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from proxy.store.base import ConversationInfo, TenantInfo
from proxy.store.codec import decode_state
from proxy.vm.mutations import Mutation

# Separates session names in one column (a name may hold any other character).
_SEP = "\x1f"
_SESSIONS = (
    f"(SELECT group_concat(s.name, '{_SEP}') FROM sessions s"
    " WHERE s.tenant = c.tenant AND s.conv_id = c.conv_id)"
)
# Bounds a fork tree's recursion (a tree is as deep as its longest chain of edits).
MAX_TREE_DEPTH = 10_000


def mutations_between(
    conn: sqlite3.Connection, tenant: str, conv_id: str, first: int, last: int
) -> list[Mutation]:
    rows = conn.execute(
        "SELECT turn, events FROM mutation_log WHERE tenant = ? AND conv_id = ?"
        " AND turn BETWEEN ? AND ? ORDER BY seq",
        (tenant, conv_id, first, last),
    )
    return [
        Mutation(turn, event, page_id, level, detail, float(at))
        for turn, events in rows
        for event, page_id, level, detail, at in orjson.loads(events)
    ]


def list_tenants(conn: sqlite3.Connection, limit: int) -> list[TenantInfo]:
    rows = conn.execute(
        "SELECT tenant, count(*), max(updated_at) FROM conversations GROUP BY tenant"
        " ORDER BY max(updated_at) DESC, tenant LIMIT ?",
        (limit,),
    )
    return [TenantInfo(tenant, int(count), float(last)) for tenant, count, last in rows]


def list_conversations(
    conn: sqlite3.Connection,
    tenant: str | None,
    session: str | None,
    conv_id: str | None,
    before: tuple[float, str] | None,
    limit: int,
) -> list[ConversationInfo]:
    where: list[str] = []
    args: list[Any] = []
    if tenant is not None:
        where.append("c.tenant = ?")
        args.append(tenant)
    if conv_id is not None:
        where.append("c.conv_id = ?")
        args.append(conv_id)
    if session is not None:
        where.append(
            "EXISTS (SELECT 1 FROM sessions s WHERE s.tenant = c.tenant"
            " AND s.conv_id = c.conv_id AND s.name = ?)"
        )
        args.append(session)
    if before is not None:
        where.append("(c.updated_at, c.conv_id) < (?, ?)")
        args.extend(before)
    sql = (
        "SELECT c.tenant, c.conv_id, c.parent_id, c.fork_at, c.length, c.updated_at, c.state,"
        f" {_SESSIONS} FROM conversations c"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY c.updated_at DESC, c.conv_id DESC LIMIT ?"
    )
    rows = conn.execute(sql, (*args, limit))
    return [
        ConversationInfo(tenant_, conv, parent, fork_at, length, updated, _names(names),
                         decode_state(state))
        for tenant_, conv, parent, fork_at, length, updated, state, names in rows
    ]  # fmt: skip


def conversation_tree(
    conn: sqlite3.Connection, tenant: str, root: str, limit: int
) -> list[ConversationInfo]:
    rows = conn.execute(
        "WITH RECURSIVE tree (conv_id, depth) AS ("
        " SELECT ?, 0"
        " UNION ALL"
        " SELECT k.conv_id, tree.depth + 1 FROM conversations k JOIN tree"
        "  ON k.tenant = ? AND k.parent_id = tree.conv_id WHERE tree.depth < ?"
        ") SELECT c.tenant, c.conv_id, c.parent_id, c.fork_at, c.length, c.updated_at,"
        f" {_SESSIONS} FROM tree JOIN conversations c ON c.tenant = ? AND c.conv_id = tree.conv_id"
        " ORDER BY tree.depth, c.fork_at, c.conv_id LIMIT ?",
        (root, tenant, MAX_TREE_DEPTH, tenant, limit),
    )
    return [
        ConversationInfo(tenant_, conv, parent, fork_at, length, updated, _names(names))
        for tenant_, conv, parent, fork_at, length, updated, names in rows
    ]


def _names(joined: str | None) -> tuple[str, ...]:
    return tuple(sorted(joined.split(_SEP))) if joined else ()
