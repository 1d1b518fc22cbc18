"""`CachedStore`: an in-process TLB in front of any PageStore.

What is cached, and why it cannot go stale:
- Pages, keyed by (tenant, owning conversation, page id). A page never changes once stored
  (a retried append leaves the stored page as it is), so an entry is true until gc. A
  cached page answers `get_pages` only where the owner on this path is certain: the leaf's
  own pages, and `msg_N` pages, whose id fixes their anchor and so their owning span.
  Anything else asks the inner store. Pages are cached from what the inner store returned,
  and from an append only where it cannot have lost to a stored page: message pages at
  positions the conversation did not have at the version the append replaced.
- Ranges of message pages (the window of turns a VM turn reads): a path holds exactly one
  message page per position it has stored, `msg_N` at N, so the cached pages at the start
  of a range are its first pages for certain, and only the rest of the range (the newest
  messages, usually) is asked of the inner store.
- Paths, keyed by (tenant, conversation): a conversation's parent and fork point never
  change, so neither does its path.
- Conversation rows (version, length, state). These do change, on any replica, so a
  cached row is only served after `inner.conversation_version()` (one indexed read of one
  integer) says it is still current; otherwise the full row is fetched. A replica thus
  never serves state another replica has changed, and skips re-reading and re-decoding a
  large state when nothing changed.
Not cached: hash lookups (a turn's newest hash is new, so the lookup is a round trip
anyway), search, ranges of other pages, mutations, sessions, and the admin API's reads.
`gc` empties the caches.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

from proxy.store.base import (
    Conversation,
    ConversationInfo,
    PageStore,
    Path,
    SearchHit,
    TenantInfo,
)
from proxy.store.codec import part_chars
from proxy.vm.lean import is_lean
from proxy.vm.mutations import Mutation
from proxy.vm.pages import Modality, Page

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """The most recent `capacity` entries; with `weigh`, also at most `max_weight` of their
    weight (an entry heavier than that on its own is not kept)."""

    def __init__(
        self, capacity: int, *, weigh: Callable[[V], int] | None = None, max_weight: int = 0
    ) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._weigh = weigh
        self._max_weight = max_weight
        self._weights: dict[K, int] = {}
        self.weight = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._add(key, value)
        self._trim()

    def put_all(self, items: Iterable[tuple[K, V]]) -> None:
        """`put` of each, in order (what is kept is the same: the most recent `capacity`),
        trimmed once: a turn's search hits are a hundred pages, mostly cached already."""
        entries = self._items
        if self._weigh is None:
            for key, value in items:
                entries[key] = value
                entries.move_to_end(key)
        else:
            for key, value in items:
                if entries.get(key) is value:
                    entries.move_to_end(key)  # (`_add`'s first case, inline: the common one)
                else:
                    self._add(key, value)
        self._trim()

    def _add(self, key: K, value: V) -> None:
        entries = self._items
        if self._weigh is not None:
            if entries.get(key) is value:
                # Most of a turn's pages are cached already, as the same objects: weighed.
                entries.move_to_end(key)
                return
            weight = self._weigh(value)
            if weight > self._max_weight:
                self.pop(key)  # kept, it would push out everything else
                return
            self.weight += weight - self._weights.get(key, 0)
            self._weights[key] = weight
        entries[key] = value
        entries.move_to_end(key)

    def _trim(self) -> None:
        entries = self._items
        while len(entries) > self.capacity or (
            self._weigh is not None and self.weight > self._max_weight and entries
        ):
            key, _ = entries.popitem(last=False)
            if self._weigh is not None:
                self.weight -= self._weights.pop(key)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)
        if self._weigh is not None:
            self.weight -= self._weights.pop(key, 0)

    def clear(self) -> None:
        self._items.clear()
        self._weights.clear()
        self.weight = 0


def page_weight(page: Page) -> int:
    """About what a cached page holds, in characters: its renderings, its message (whose
    text is about its level 0, and whose parts may hold an inline image's data), and an
    image page's URL (a data URL, as often as not)."""
    renderings = page.renderings
    url = page.extra.get("url")
    return (512 + 2 * len(renderings[0]) + len(renderings[1]) + len(renderings[2])
            + part_chars(page) + (len(url) if isinstance(url, str) else 0))


# The page cache's bound in characters of its pages (about bytes, for most text), beside
# its count (`store.cache_pages`): a few pasted files must not make it gigabytes.
PAGE_CACHE_CHARS = 128 << 20


class CachedStore:
    @property
    def reads_wait(self) -> bool:
        return self.inner.reads_wait

    def __init__(
        self, inner: PageStore, *, max_pages: int = 10_000, max_conversations: int = 1_000
    ) -> None:
        self.inner = inner
        self._pages: LRU[tuple[str, str, str], Page] = LRU(
            max_pages, weigh=page_weight, max_weight=PAGE_CACHE_CHARS)
        self._paths: LRU[tuple[str, str], Path] = LRU(max_conversations)
        self._convs: LRU[tuple[str, str], Conversation] = LRU(max_conversations)
        self.page_hits = 0
        self.page_misses = 0

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def lookup_hashes(
        self, tenant: str, hashes: Sequence[str]
    ) -> dict[str, tuple[str, int]]:
        return await self.inner.lookup_hashes(tenant, hashes)

    # -- conversations -----------------------------------------------------------------------

    async def get_conversation(self, tenant: str, conv_id: str) -> Conversation | None:
        key = (tenant, conv_id)
        cached = self._convs.get(key)
        if cached is not None:
            version = await self.inner.conversation_version(tenant, conv_id)
            if version == cached.version:
                return cached
        fresh = await self.inner.get_conversation(tenant, conv_id)
        if fresh is None:
            self._convs.pop(key)
            return None
        return self._remember(fresh)

    async def conversation_version(self, tenant: str, conv_id: str) -> int | None:
        return await self.inner.conversation_version(tenant, conv_id)

    async def create_conversation(
        self, tenant: str, conv_id: str, *, parent_id: str | None = None, fork_at: int = 0,
        durable: bool = True,
    ) -> Conversation:
        conv = await self.inner.create_conversation(
            tenant, conv_id, parent_id=parent_id, fork_at=fork_at, durable=durable
        )
        return self._remember(conv)

    async def room(self) -> None:
        await self.inner.room()

    async def open_root(
        self, tenant: str, conv_id: str, hashes: Sequence[str]
    ) -> Conversation | None:
        conv = await self.inner.open_root(tenant, conv_id, hashes)
        return None if conv is None else self._remember(conv)

    async def path(self, tenant: str, conv_id: str) -> Path:
        cached = self._paths.get((tenant, conv_id))
        if cached is None:
            cached = await self.inner.path(tenant, conv_id)
            self._paths.put((tenant, conv_id), cached)
        return cached

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
        before = self._convs.get((tenant, conv_id))
        conv = await self.inner.append(
            tenant, conv_id, pages, expected_version=expected_version, new_length=new_length,
            state=state, mutations=mutations, durable=durable, response_id=response_id,
        )
        if before is not None and before.version == expected_version:
            self._learn_appended(tenant, conv_id, pages, before.length)
        else:
            self._forget_lean(tenant, conv_id, pages)
        return self._remember(conv)

    def _learn_appended(
        self, tenant: str, conv_id: str, pages: Sequence[Page], stored_length: int
    ) -> None:
        """The message pages an append just stored, at positions the conversation did not
        have (`stored_length`, read at the version the append replaced): no page could sit
        there before, so the pages stored are these, not an earlier copy the append left in
        place. Caching them spares the next turn's read of its own question."""
        for page in pages:
            key = (tenant, conv_id, page.page_id)
            if is_lean(page):
                continue  # a short chat's: read again only if it ever needs memory, once
            if page.anchor >= stored_length and page.page_id == f"msg_{page.anchor}":
                self._pages.put(key, page)
            elif (cached := self._pages.get(key)) and is_lean(cached):
                self._pages.put(key, page)  # the lean page it replaced (proxy.vm.lean)

    def _forget_lean(self, tenant: str, conv_id: str, pages: Sequence[Page]) -> None:
        for page in pages:
            key = (tenant, conv_id, page.page_id)
            if not is_lean(page) and (cached := self._pages.get(key)) and is_lean(cached):
                self._pages.put(key, page)

    async def put_pages(self, tenant: str, conv_id: str, pages: Sequence[Page]) -> int:
        written = await self.inner.put_pages(tenant, conv_id, pages)
        for page in pages:
            key = (tenant, conv_id, page.page_id)
            if self._pages.get(key) is not None:  # a page replaced: not the cached one now
                self._pages.put(key, page)
        return int(written)

    async def update_state(
        self,
        tenant: str,
        conv_id: str,
        *,
        expected_version: int,
        state: Mapping[str, Any],
        mutations: Sequence[Mutation] = (),
    ) -> Conversation:
        conv = await self.inner.update_state(
            tenant, conv_id, expected_version=expected_version, state=state,
            mutations=mutations,
        )
        return self._remember(conv)

    def _remember(self, conv: Conversation) -> Conversation:
        self._convs.put((conv.tenant, conv.conv_id), conv)
        return conv

    # -- pages -------------------------------------------------------------------------------

    async def get_pages(self, path: Path, page_ids: Sequence[str]) -> dict[str, Page]:
        found: dict[str, Page] = {}
        missing: list[str] = []
        for page_id in page_ids:
            page = self._cached_page(path, page_id)
            if page is None:
                missing.append(page_id)
            else:
                found[page_id] = page
        self.page_hits += len(found)
        self.page_misses += len(missing)
        if missing:
            fetched = await self.inner.get_pages(path, missing)
            self._learn(path, fetched.values())
            found.update(fetched)
        return {page_id: found[page_id] for page_id in page_ids if page_id in found}

    def _cached_page(self, path: Path, page_id: str) -> Page | None:
        # parse_page_id's reading of a message id, without its regular expression (a turn
        # looks up a few hundred ids).
        prefix, _, number = page_id.strip().partition("_")
        if prefix == "msg" and number.isdecimal():
            owner = path.owner_of(int(number))
        else:
            owner = path.leaf
        if owner is None:
            return None
        page = self._pages.get((path.tenant, owner, page_id))
        if page is None or path.owner_of(page.anchor) != owner:
            return None
        return page

    def _cached_message(self, path: Path, position: int) -> Page | None:
        owner = path.owner_of(position)
        if owner is None:
            return None
        page = self._pages.get((path.tenant, owner, f"msg_{position}"))
        return page if page is not None and page.anchor == position else None

    def _learn(self, path: Path, pages: Iterable[Page]) -> None:
        tenant = path.tenant
        self._pages.put_all(
            ((tenant, owner, page.page_id), page)
            for page in pages
            if (owner := path.owner_of(page.anchor)) is not None
        )

    async def pages_in_range(
        self, path: Path, lo: int, hi: int, *, prefixes: Sequence[str] = ("msg",)
    ) -> list[Page]:
        head: list[Page] = []
        if tuple(prefixes) == ("msg",):
            while lo < hi and (page := self._cached_message(path, lo)) is not None:
                head.append(page)
                lo += 1
            self.page_hits += len(head)
            if lo >= hi:
                return head
        pages = await self.inner.pages_in_range(path, lo, hi, prefixes=prefixes)
        self._learn(path, pages)
        return [*head, *pages] if head else pages

    async def search(
        self, path: Path, query: str, *, limit: int = 5, modality: Modality | None = None
    ) -> list[SearchHit]:
        hits = await self.inner.search(path, query, limit=limit, modality=modality)
        self._learn(path, (hit.page for hit in hits))
        return hits

    # -- pass-through ------------------------------------------------------------------------

    async def mutations(
        self, tenant: str, conv_id: str, *, turn: int | None = None
    ) -> list[Mutation]:
        return await self.inner.mutations(tenant, conv_id, turn=turn)

    async def mutations_between(
        self, tenant: str, conv_id: str, first: int, last: int
    ) -> list[Mutation]:
        return await self.inner.mutations_between(tenant, conv_id, first, last)

    async def list_tenants(self, *, limit: int = 1000) -> list[TenantInfo]:
        return await self.inner.list_tenants(limit=limit)

    async def list_conversations(
        self,
        *,
        tenant: str | None = None,
        session: str | None = None,
        conv_id: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[ConversationInfo]:
        return await self.inner.list_conversations(
            tenant=tenant, session=session, conv_id=conv_id, before=before, limit=limit
        )

    async def conversation_tree(
        self, tenant: str, root: str, *, limit: int = 500
    ) -> list[ConversationInfo]:
        return await self.inner.conversation_tree(tenant, root, limit=limit)

    def cache_stats(self) -> dict[str, int]:
        """Page lookups answered from the cache and from the store, and pages held."""
        return {"hits": self.page_hits, "misses": self.page_misses, "pages": len(self._pages)}

    def lock(self, tenant: str, conv_id: str) -> AbstractAsyncContextManager[None]:
        return self.inner.lock(tenant, conv_id)

    async def resolve_session(self, tenant: str, name: str) -> str | None:
        return await self.inner.resolve_session(tenant, name)

    async def bind_session(self, tenant: str, name: str, conv_id: str) -> None:
        await self.inner.bind_session(tenant, name, conv_id)

    async def find_response(self, tenant: str, response_id: str) -> tuple[str, int] | None:
        return await self.inner.find_response(tenant, response_id)

    async def remember_response(
        self, tenant: str, response_id: str, conv_id: str, length: int
    ) -> None:
        await self.inner.remember_response(tenant, response_id, conv_id, length)

    async def gc(self, older_than: float) -> int:
        deleted = await self.inner.gc(older_than)
        self._pages.clear()
        self._paths.clear()
        self._convs.clear()
        return deleted
