"""What a SQLite store keeps beside conversations and pages: session names, the Responses
API's response ids (found by proxy.store.sqlite, which knows those its deferred appends
will record), retention, and the inspector's listings. Each is one query on a
thread of proxy.store.sqlite_calls; kept apart so that the store's module holds its
conversations and pages, and their deferral rules, alone."""

from __future__ import annotations

from proxy.store import sqlite_admin
from proxy.store import sqlite_queries as q
from proxy.store.base import ConversationInfo, TenantInfo
from proxy.store.sqlite_calls import SQLiteCalls
from proxy.vm.mutations import Mutation


class SQLiteNames(SQLiteCalls):
    # -- the inspector's reads ---------------------------------------------------------------

    async def mutations_between(
        self, tenant: str, conv_id: str, first: int, last: int
    ) -> list[Mutation]:
        return await self._read(
            sqlite_admin.mutations_between, tenant, conv_id, first, last, of=(tenant, conv_id)
        )

    async def list_tenants(self, *, limit: int = 1000) -> list[TenantInfo]:
        return await self._read(sqlite_admin.list_tenants, limit)

    async def list_conversations(
        self,
        *,
        tenant: str | None = None,
        session: str | None = None,
        conv_id: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[ConversationInfo]:
        return await self._read(
            sqlite_admin.list_conversations, tenant, session, conv_id, before, limit
        )

    async def conversation_tree(
        self, tenant: str, root: str, *, limit: int = 500
    ) -> list[ConversationInfo]:
        return await self._read(sqlite_admin.conversation_tree, tenant, root, limit)

    # -- sessions and retention --------------------------------------------------------------

    async def resolve_session(self, tenant: str, name: str) -> str | None:
        return await self._read(q.resolve_session, tenant, name)

    async def bind_session(self, tenant: str, name: str, conv_id: str) -> None:
        await self._write(q.bind_session, tenant, name, conv_id)

    async def remember_response(
        self, tenant: str, response_id: str, conv_id: str, length: int
    ) -> None:
        await self._write(q.remember_response, tenant, response_id, conv_id, length)

    async def gc(self, older_than: float) -> int:
        deleted = 0
        while batch := await self._write(q.gc_batch, older_than, heavy=True):
            deleted += batch
        return deleted


