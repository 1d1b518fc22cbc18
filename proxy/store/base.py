"""The page store protocol: the one seam between the fault loop and durable memory.

Model. Pages belong to a tenant and a conversation. A conversation is a linear path of
message positions 0..length-1. Editing or regenerating an earlier message forks: the new
conversation names its `parent_id` and `fork_at`, and positions below `fork_at` are read
from the parent's path (recursively), so shared prefixes are stored once. Every message
page has a chain hash (see proxy.vm.identity), unique per tenant, so a client that resends
its whole history is recognised by looking up hashes.

Every method is scoped by tenant. A page id that exists only under another tenant or on
another branch is "not found", exactly like an id that exists nowhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy.vm.mutations import Mutation
from proxy.vm.pages import Modality, Page
from proxy.vm.records import immutable


@immutable
class Conversation:
    tenant: str
    conv_id: str
    parent_id: str | None
    fork_at: int
    length: int
    version: int
    state: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """A conversation as the admin API lists it: its row, the session names that point to
    it, and its state (empty where a listing leaves it out)."""

    tenant: str
    conv_id: str
    parent_id: str | None
    fork_at: int
    length: int
    updated_at: float
    sessions: tuple[str, ...] = ()
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TenantInfo:
    tenant: str
    conversations: int
    last_used: float


@immutable
class PathSpan:
    """Positions `lo <= anchor < hi` of `conv_id` are on the path (`hi` None: unbounded)."""

    conv_id: str
    lo: int
    hi: int | None


@immutable
class Path:
    """The spans that make up one conversation's visible history, leaf first."""

    tenant: str
    spans: tuple[PathSpan, ...]

    @property
    def leaf(self) -> str:
        return self.spans[0].conv_id

    def owner_of(self, anchor: int) -> str | None:
        for span in self.spans:
            if anchor >= span.lo and (span.hi is None or anchor < span.hi):
                return span.conv_id
        return None


@dataclass(frozen=True, slots=True)
class SearchHit:
    page: Page
    score: float


class StoreError(Exception):
    """The store could not do what was asked: its database failed or could not be reached,
    or the store is closed. Retrying may help; the HTTP edge answers it with a 503."""


class VersionConflict(Exception):
    """`append` was given an `expected_version` that is no longer current."""


class UnknownConversation(LookupError):
    """The conversation (or a fork's parent) does not exist under this tenant."""


class PageStore(Protocol):
    @property
    def reads_wait(self) -> bool:
        """Whether a read is a round trip to another process (PostgreSQL), worth sharing
        among the requests that need the same answer (proxy.loop.short_chat); a store that
        reads in process (SQLite on the event loop's connection) answers sooner alone."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot answer (used by /healthz)."""

    async def room(self) -> None:
        """Until the store can take a request's writes: a store whose writes are deferred
        (SQLite) makes a request wait here while too many are pending, before it is
        answered. Others return at once."""

    async def lookup_hashes(
        self, tenant: str, hashes: Sequence[str]
    ) -> dict[str, tuple[str, int]]:
        """For each known chain hash: (conv_id, position). Unknown hashes are absent."""

    async def get_conversation(self, tenant: str, conv_id: str) -> Conversation | None: ...

    async def conversation_version(self, tenant: str, conv_id: str) -> int | None:
        """The current version alone (None: no such conversation): the cheap check a cache
        makes before trusting a conversation row it holds."""

    async def create_conversation(
        self, tenant: str, conv_id: str, *, parent_id: str | None = None, fork_at: int = 0,
        durable: bool = True,
    ) -> Conversation:
        """Create an empty conversation (idempotent: returns the existing one).

        `durable=False`, as for `append`: the store may return before the row is committed
        (the SQLite store, on a conversation it finds nowhere, queues the create for the
        writer ahead of the deferred append that follows; reads of the conversation wait
        for it). Its failure is logged, not raised, and forgets it here: an append on the
        row returned is then refused. For conversations of a whole-history request."""

    async def open_root(
        self, tenant: str, conv_id: str, hashes: Sequence[str]
    ) -> Conversation | None:
        """The root conversation `conv_id` for a whole-history request none of whose messages
        is stored yet (their chain hashes `hashes`): its row, created as
        `create_conversation(durable=False)` creates it when absent; None when any of
        `hashes` is stored. `lookup_hashes` then `create_conversation` (`WritesWhenAsked`),
        in one trip to the database where the backend can (SQLite)."""

    async def path(self, tenant: str, conv_id: str) -> Path:
        """The spans of `conv_id`'s history, following parents."""

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
        """Atomically store pages, set length and state, log mutations, bump the version.

        Pages already stored (same conversation and page id) are left as they are (but a
        lean page, which its derived page replaces), so a retried append is harmless.
        Raises VersionConflict when `expected_version` is stale. `durable=False`: the store
        may return before the write is committed (the SQLite store queues it for the next
        group commit, and reads of the conversation wait for it), or before it is on disk
        (the PostgreSQL store commits it without waiting for the WAL flush); its failure
        is logged, not raised. For messages a client will send again (a whole-history
        request).
        `response_id`: a Responses API id recorded as `remember_response` would, at
        `new_length` of `conv_id`, in the same write (committed, or lost, with it).
        """

    async def update_state(
        self,
        tenant: str,
        conv_id: str,
        *,
        expected_version: int,
        state: Mapping[str, Any],
        mutations: Sequence[Mutation] = (),
    ) -> Conversation: ...

    async def put_pages(self, tenant: str, conv_id: str, pages: Sequence[Page]) -> int:
        """Store pages on `conv_id` without touching its row (version, length, state), so
        no request holding that row is disturbed: what a model wrote later, in the
        background (proxy.loop.summarizer). A page whose id is stored replaces it and must
        have its search terms (the same level 0, hint, speaker and date: the index is not
        touched); a new id is added and indexed (derived pages only: no chain hash). Nothing
        is stored for a conversation that does not exist. Returns how many were written."""

    async def get_pages(self, path: Path, page_ids: Sequence[str]) -> dict[str, Page]:
        """The pages with these ids visible on `path`; ids not visible are absent."""

    async def pages_in_range(
        self, path: Path, lo: int, hi: int, *, prefixes: Sequence[str] = ("msg",)
    ) -> list[Page]:
        """Pages with `lo <= anchor < hi` on `path` whose id has one of these prefixes,
        in anchor order (message pages first within an anchor)."""

    async def search(
        self, path: Path, query: str, *, limit: int = 5, modality: Modality | None = None
    ) -> list[SearchHit]:
        """BM25-ranked pages on `path` matching `query`, best first."""

    async def mutations(
        self, tenant: str, conv_id: str, *, turn: int | None = None
    ) -> list[Mutation]: ...

    async def mutations_between(
        self, tenant: str, conv_id: str, first: int, last: int
    ) -> list[Mutation]:
        """The mutations of turns `first..last` (inclusive) logged on `conv_id`, in order."""

    # -- reading for people (the admin API, `vm-proxy inspect`): every tenant's -------------

    async def list_tenants(self, *, limit: int = 1000) -> list[TenantInfo]:
        """Tenants with conversations, most recently used first."""

    async def list_conversations(
        self,
        *,
        tenant: str | None = None,
        session: str | None = None,
        conv_id: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[ConversationInfo]:
        """Conversations, most recently used first, filtered by tenant, by a session name
        that points to them, or by id (of any tenant); `before`: the (updated_at, conv_id)
        of the last row of the previous page."""

    async def conversation_tree(
        self, tenant: str, root: str, *, limit: int = 500
    ) -> list[ConversationInfo]:
        """`root` and the conversations forked from it, recursively (states left out)."""

    def lock(self, tenant: str, conv_id: str) -> AbstractAsyncContextManager[None]:
        """Serialise requests of one conversation (across processes where the backend can)."""

    async def resolve_session(self, tenant: str, name: str) -> str | None:
        """The conversation a client-chosen `X-VM-Session` name points to."""

    async def bind_session(self, tenant: str, name: str, conv_id: str) -> None: ...

    async def find_response(self, tenant: str, response_id: str) -> tuple[str, int] | None:
        """Where a Responses API answer of the proxy's ended: (conv_id, length), the
        conversation's history up to that length being what `previous_response_id` names."""

    async def remember_response(
        self, tenant: str, response_id: str, conv_id: str, length: int
    ) -> None:
        """Record (or move) a response id; deleted with its conversation by `gc`."""

    async def gc(self, older_than: float) -> int:
        """Delete conversations not updated since `older_than` (epoch seconds); return count."""


class WritesWhenAsked:
    """`room` and `open_root` of a store that makes every write when it is asked (the
    memory and PostgreSQL stores): nothing to wait for, and the opening as a lookup, then
    a create."""

    async def room(self) -> None:
        return None

    async def open_root(
        self: PageStore, tenant: str, conv_id: str, hashes: Sequence[str]
    ) -> Conversation | None:
        if await self.lookup_hashes(tenant, hashes):
            return None
        return await self.create_conversation(tenant, conv_id, durable=False)
