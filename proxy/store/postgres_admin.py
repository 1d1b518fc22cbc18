"""The PostgreSQL store's reads for people (the admin API, `vm-proxy inspect`): across
tenants, paged, never on the path of a turn. A mixin of PostgresStore."""

from __future__ import annotations

from typing import Any

from proxy.store.base import ConversationInfo, TenantInfo
from proxy.store.codec import decode_state
from proxy.vm.mutations import Mutation

_SESSIONS = (
    "(SELECT array_agg(s.name ORDER BY s.name) FROM sessions s"
    " WHERE s.tenant = c.tenant AND s.conv_id = c.conv_id)"
)
MAX_TREE_DEPTH = 10_000


class PostgresAdminReads:
    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError  # PostgresStore's

    async def mutations_between(
        self, tenant: str, conv_id: str, first: int, last: int
    ) -> list[Mutation]:
        rows = await self._fetch(
            "SELECT turn, event, page_id, level, detail, at FROM mutations"
            " WHERE tenant = $1 AND conv_id = $2 AND turn BETWEEN $3 AND $4 ORDER BY seq",
            tenant, conv_id, first, last,
        )
        return [Mutation(*row) for row in rows]

    async def list_tenants(self, *, limit: int = 1000) -> list[TenantInfo]:
        rows = await self._fetch(
            "SELECT tenant, count(*), max(updated_at) FROM conversations GROUP BY tenant"
            " ORDER BY max(updated_at) DESC, tenant LIMIT $1",
            limit,
        )
        return [TenantInfo(str(t), int(n), float(last)) for t, n, last in rows]

    async def list_conversations(
        self,
        *,
        tenant: str | None = None,
        session: str | None = None,
        conv_id: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[ConversationInfo]:
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if tenant is not None:
            where.append(f"c.tenant = {arg(tenant)}")
        if conv_id is not None:
            where.append(f"c.conv_id = {arg(conv_id)}")
        if session is not None:
            where.append(
                "EXISTS (SELECT 1 FROM sessions s WHERE s.tenant = c.tenant"
                f" AND s.conv_id = c.conv_id AND s.name = {arg(session)})"
            )
        if before is not None:
            where.append(f"(c.updated_at, c.conv_id) < ({arg(before[0])}, {arg(before[1])})")
        rows = await self._fetch(
            "SELECT c.tenant, c.conv_id, c.parent_id, c.fork_at, c.length, c.updated_at,"
            f" c.state, {_SESSIONS} FROM conversations c"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY c.updated_at DESC, c.conv_id DESC LIMIT {arg(limit)}",
            *args,
        )
        return [
            ConversationInfo(t, conv, parent, fork_at, length, updated, tuple(names or ()),
                             decode_state(state))
            for t, conv, parent, fork_at, length, updated, state, names in rows
        ]  # fmt: skip

    async def conversation_tree(
        self, tenant: str, root: str, *, limit: int = 500
    ) -> list[ConversationInfo]:
        rows = await self._fetch(
            "WITH RECURSIVE tree (conv_id, depth) AS ("
            " SELECT $2::text, 0"
            " UNION ALL"
            " SELECT k.conv_id, tree.depth + 1 FROM conversations k JOIN tree"
            "  ON k.tenant = $1 AND k.parent_id = tree.conv_id WHERE tree.depth < $3"
            ") SELECT c.tenant, c.conv_id, c.parent_id, c.fork_at, c.length, c.updated_at,"
            f" {_SESSIONS} FROM tree JOIN conversations c"
            " ON c.tenant = $1 AND c.conv_id = tree.conv_id"
            " ORDER BY tree.depth, c.fork_at, c.conv_id LIMIT $4",
            tenant, root, MAX_TREE_DEPTH, limit,
        )
        return [
            ConversationInfo(t, conv, parent, fork_at, length, updated, tuple(names or ()))
            for t, conv, parent, fork_at, length, updated, names in rows
        ]
