"""`memory://`: the whole store in dicts of one process; lost on exit. For tests and trials.

Pages go through the same JSON codec as the durable backends, so anything that would not
survive SQLite or PostgreSQL fails here too. Every method runs without awaiting anything
but `lock`, so each is atomic with respect to the event loop.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from proxy.store.base import (
    Conversation,
    ConversationInfo,
    Path,
    SearchHit,
    TenantInfo,
    UnknownConversation,
    VersionConflict,
    WritesWhenAsked,
)
from proxy.store.codec import (
    decode_page,
    decode_state,
    encode_page,
    encode_state,
    id_prefix,
    page_search_tokens,
)
from proxy.store.locks import KeyedLocks
from proxy.store.memory_vectors import MemoryVectors
from proxy.store.paths import build_path
from proxy.vm.bm25 import BM25Index
from proxy.vm.lean import is_lean
from proxy.vm.mutations import Clock, Mutation
from proxy.vm.pages import Modality, Page


@dataclass(slots=True)
class _ConvRow:
    parent_id: str | None
    fork_at: int
    length: int = 0
    version: int = 0
    state: bytes = b"{}"
    updated_at: float = 0.0


@dataclass(slots=True)
class _ConvPages:
    by_id: dict[str, Page] = field(default_factory=dict)
    # (anchor, 0 for a message page else 1, insertion number, page id): range scans by bisect.
    ordered: list[tuple[int, int, int, str]] = field(default_factory=list)


class MemoryStore(WritesWhenAsked):
    reads_wait = False
    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._convs: dict[tuple[str, str], _ConvRow] = {}
        self._pages: dict[tuple[str, str], _ConvPages] = {}
        self._hashes: dict[tuple[str, str], tuple[str, int]] = {}
        self._sessions: dict[tuple[str, str], str] = {}
        self._responses: dict[tuple[str, str], tuple[str, int]] = {}
        self._mutations: dict[tuple[str, str], list[Mutation]] = {}
        self.vectors = MemoryVectors(self)
        self._indexes: dict[str, BM25Index[tuple[str, str]]] = {}
        self._locks = KeyedLocks()
        self._inserted = 0

    @classmethod
    async def open(cls, url: str, *, clock: Clock | None = None) -> MemoryStore:
        return cls(clock=clock or time.time)

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def lookup_hashes(
        self, tenant: str, hashes: Sequence[str]
    ) -> dict[str, tuple[str, int]]:
        found = {h: self._hashes.get((tenant, h)) for h in hashes}
        return {h: where for h, where in found.items() if where is not None}

    async def get_conversation(self, tenant: str, conv_id: str) -> Conversation | None:
        row = self._convs.get((tenant, conv_id))
        return None if row is None else _conversation(tenant, conv_id, row)

    def conversation_length(self, tenant: str, conv_id: str) -> int | None:
        row = self._convs.get((tenant, conv_id))
        return None if row is None else row.length

    async def conversation_version(self, tenant: str, conv_id: str) -> int | None:
        row = self._convs.get((tenant, conv_id))
        return None if row is None else row.version

    async def create_conversation(
        self, tenant: str, conv_id: str, *, parent_id: str | None = None, fork_at: int = 0,
        durable: bool = True,  # every create is committed before it returns
    ) -> Conversation:
        row = self._convs.get((tenant, conv_id))
        if row is None:
            now = self._clock()
            if parent_id is not None:
                parent = self._convs.get((tenant, parent_id))
                if parent is None:
                    raise UnknownConversation(parent_id)
                parent.updated_at = max(parent.updated_at, now)  # forking is a use of it
            fork = fork_at if parent_id is not None else 0
            row = _ConvRow(parent_id, fork, length=fork, updated_at=now)
            self._convs[(tenant, conv_id)] = row
        return _conversation(tenant, conv_id, row)

    async def path(self, tenant: str, conv_id: str) -> Path:
        def fork_of(conv: str) -> tuple[str | None, int] | None:
            row = self._convs.get((tenant, conv))
            return None if row is None else (row.parent_id, row.fork_at)

        return build_path(tenant, conv_id, fork_of)

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
        durable: bool = True,  # every append is committed before it returns
        response_id: str | None = None,
    ) -> Conversation:
        row = self._checked_row(tenant, conv_id, expected_version)
        # Encode everything before changing anything: a failure leaves the store untouched.
        copies = [decode_page(encode_page(page)) for page in pages]
        new_state = encode_state(state) if state is not None else row.state
        stored = self._pages.setdefault((tenant, conv_id), _ConvPages())
        index = self._indexes.setdefault(tenant, BM25Index())
        for page in copies:
            existing = stored.by_id.get(page.page_id)
            if existing is not None:
                # Left as it is, unless it is the lean page this one derives.
                if is_lean(page) or not is_lean(existing):
                    continue
                stored.by_id[page.page_id] = page
                index.add_tokens((conv_id, page.page_id), page_search_tokens(page))
                continue
            stored.by_id[page.page_id] = page
            self._inserted += 1
            entry = (page.anchor, 0 if page.is_message else 1, self._inserted, page.page_id)
            bisect.insort(stored.ordered, entry)
            if not is_lean(page):  # nothing searches a conversation below activate_above
                index.add_tokens((conv_id, page.page_id), page_search_tokens(page))
            if page.chain_hash:
                self._hashes.setdefault((tenant, page.chain_hash), (conv_id, page.anchor))
        row.length = new_length
        row.state = new_state
        if response_id is not None:
            self._responses[(tenant, response_id)] = (conv_id, new_length)
        return self._commit(tenant, conv_id, row, mutations, state)

    async def put_pages(self, tenant: str, conv_id: str, pages: Sequence[Page]) -> int:
        if (tenant, conv_id) not in self._convs:
            return 0
        copies = [decode_page(encode_page(page)) for page in pages]
        stored = self._pages.setdefault((tenant, conv_id), _ConvPages())
        index = self._indexes.setdefault(tenant, BM25Index())
        for page in copies:
            if page.page_id in stored.by_id:
                stored.by_id[page.page_id] = page  # same search terms: the index stands
                continue
            stored.by_id[page.page_id] = page
            self._inserted += 1
            entry = (page.anchor, 0 if page.is_message else 1, self._inserted, page.page_id)
            bisect.insort(stored.ordered, entry)
            index.add_tokens((conv_id, page.page_id), page_search_tokens(page))
        return len(copies)

    async def update_state(
        self,
        tenant: str,
        conv_id: str,
        *,
        expected_version: int,
        state: Mapping[str, Any],
        mutations: Sequence[Mutation] = (),
    ) -> Conversation:
        row = self._checked_row(tenant, conv_id, expected_version)
        row.state = encode_state(state)
        return self._commit(tenant, conv_id, row, mutations, state)

    def _checked_row(self, tenant: str, conv_id: str, expected_version: int) -> _ConvRow:
        row = self._convs.get((tenant, conv_id))
        if row is None:
            raise UnknownConversation(conv_id)
        if row.version != expected_version:
            raise VersionConflict(f"{conv_id}: version {row.version}, not {expected_version}")
        return row

    def _commit(
        self, tenant: str, conv_id: str, row: _ConvRow, mutations: Sequence[Mutation],
        decoded: Mapping[str, Any] | None = None,
    ) -> Conversation:
        """`decoded`: the state the row now stores, as given (returned as the SQLite store
        returns it, without decoding back what was just encoded)."""
        now = self._clock()
        log = self._mutations.setdefault((tenant, conv_id), [])
        log.extend(m if m.at else _stamped(m, now) for m in mutations)
        row.version += 1
        row.updated_at = now
        return _conversation(tenant, conv_id, row, decoded)

    def _visible(self, path: Path, conv_id: str, page_id: str) -> Page | None:
        stored = self._pages.get((path.tenant, conv_id))
        page = stored.by_id.get(page_id) if stored else None
        if page is None or path.owner_of(page.anchor) != conv_id:
            return None
        return page

    async def get_pages(self, path: Path, page_ids: Sequence[str]) -> dict[str, Page]:
        found: dict[str, Page] = {}
        for page_id in page_ids:
            for span in path.spans:
                page = self._visible(path, span.conv_id, page_id)
                if page is not None:
                    found[page_id] = page
                    break
        return found

    async def pages_in_range(
        self, path: Path, lo: int, hi: int, *, prefixes: Sequence[str] = ("msg",)
    ) -> list[Page]:
        picked: list[tuple[tuple[int, int, int, str], Page]] = []
        for span in path.spans:
            stored = self._pages.get((path.tenant, span.conv_id))
            start = max(lo, span.lo)
            stop = hi if span.hi is None else min(hi, span.hi)
            if stored is None or start >= stop:
                continue
            first = bisect.bisect_left(stored.ordered, (start,))
            last = bisect.bisect_left(stored.ordered, (stop,))
            for entry in stored.ordered[first:last]:
                if id_prefix(entry[3]) in prefixes:
                    picked.append((entry, stored.by_id[entry[3]]))
        picked.sort(key=lambda item: item[0][:3])
        return [page for _, page in picked]

    async def search(
        self, path: Path, query: str, *, limit: int = 5, modality: Modality | None = None
    ) -> list[SearchHit]:
        index = self._indexes.get(path.tenant)
        if index is None:
            return []

        def on_path(key: tuple[str, str]) -> bool:
            page = self._visible(path, *key)
            return page is not None and (modality is None or page.modality == modality)

        hits = index.search(query, limit, filter=on_path)
        return [SearchHit(self._pages[(path.tenant, c)].by_id[p], s) for (c, p), s in hits]

    async def mutations(
        self, tenant: str, conv_id: str, *, turn: int | None = None
    ) -> list[Mutation]:
        log = self._mutations.get((tenant, conv_id), [])
        return [m for m in log if turn is None or m.turn == turn]

    async def mutations_between(
        self, tenant: str, conv_id: str, first: int, last: int
    ) -> list[Mutation]:
        log = self._mutations.get((tenant, conv_id), [])
        return [m for m in log if first <= m.turn <= last]

    async def list_tenants(self, *, limit: int = 1000) -> list[TenantInfo]:
        found: dict[str, tuple[int, float]] = {}
        for (tenant, _), row in self._convs.items():
            count, last = found.get(tenant, (0, 0.0))
            found[tenant] = (count + 1, max(last, row.updated_at))
        rows = [TenantInfo(t, n, last) for t, (n, last) in found.items()]
        rows.sort(key=lambda r: (-r.last_used, r.tenant))
        return rows[:limit]

    async def list_conversations(
        self,
        *,
        tenant: str | None = None,
        session: str | None = None,
        conv_id: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[ConversationInfo]:
        rows = [
            self._info(t, c, row, state=True)
            for (t, c), row in self._convs.items()
            if (tenant is None or t == tenant) and (conv_id is None or c == conv_id)
            and (before is None or (row.updated_at, c) < before)
        ]  # fmt: skip
        if session is not None:
            rows = [r for r in rows if session in r.sessions]
        rows.sort(key=lambda r: (r.updated_at, r.conv_id), reverse=True)
        return rows[:limit]

    async def conversation_tree(
        self, tenant: str, root: str, *, limit: int = 500
    ) -> list[ConversationInfo]:
        found: list[ConversationInfo] = []
        level = [root] if (tenant, root) in self._convs else []
        while level and len(found) < limit:
            rows = [self._info(tenant, c, self._convs[(tenant, c)]) for c in level]
            rows.sort(key=lambda r: (r.fork_at, r.conv_id))
            found.extend(rows)
            parents = set(level)
            level = [c for (t, c), row in self._convs.items()
                     if t == tenant and row.parent_id in parents]  # fmt: skip
        return found[:limit]

    def _info(
        self, tenant: str, conv_id: str, row: _ConvRow, *, state: bool = False
    ) -> ConversationInfo:
        names = sorted(n for (t, n), c in self._sessions.items() if t == tenant and c == conv_id)
        return ConversationInfo(
            tenant, conv_id, row.parent_id, row.fork_at, row.length, row.updated_at,
            tuple(names), decode_state(row.state) if state else {},
        )

    def lock(self, tenant: str, conv_id: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold((tenant, conv_id))

    async def resolve_session(self, tenant: str, name: str) -> str | None:
        return self._sessions.get((tenant, name))

    async def bind_session(self, tenant: str, name: str, conv_id: str) -> None:
        self._sessions[(tenant, name)] = conv_id

    async def find_response(self, tenant: str, response_id: str) -> tuple[str, int] | None:
        return self._responses.get((tenant, response_id))

    async def remember_response(
        self, tenant: str, response_id: str, conv_id: str, length: int
    ) -> None:
        self._responses[(tenant, response_id)] = (conv_id, length)

    async def gc(self, older_than: float) -> int:
        deleted = 0
        while True:
            parents = {(t, row.parent_id) for (t, _), row in self._convs.items() if row.parent_id}
            doomed = [
                key
                for key, row in self._convs.items()
                if row.updated_at < older_than and key not in parents
            ]
            if not doomed:
                return deleted
            for key in doomed:
                self._drop(*key)
            deleted += len(doomed)

    def _drop(self, tenant: str, conv_id: str) -> None:
        del self._convs[(tenant, conv_id)]
        self.vectors.forget(tenant, conv_id)
        self._mutations.pop((tenant, conv_id), None)
        stored = self._pages.pop((tenant, conv_id), None)
        index = self._indexes.get(tenant)
        for page in stored.by_id.values() if stored else ():
            if index is not None:
                index.remove((conv_id, page.page_id))
            if page.chain_hash and self._hashes.get((tenant, page.chain_hash), ("",))[0] == conv_id:
                del self._hashes[(tenant, page.chain_hash)]
        for key, target in list(self._sessions.items()):
            if key[0] == tenant and target == conv_id:
                del self._sessions[key]
        for key, (owner, _) in list(self._responses.items()):
            if key[0] == tenant and owner == conv_id:
                del self._responses[key]


def _conversation(
    tenant: str, conv_id: str, row: _ConvRow, decoded: Mapping[str, Any] | None = None
) -> Conversation:
    return Conversation(
        tenant=tenant,
        conv_id=conv_id,
        parent_id=row.parent_id,
        fork_at=row.fork_at,
        length=row.length,
        version=row.version,
        state=decode_state(row.state) if decoded is None else dict(decoded),
        updated_at=row.updated_at,
    )


def _stamped(mutation: Mutation, at: float) -> Mutation:
    return dataclasses.replace(mutation, at=at)
