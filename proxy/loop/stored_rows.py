"""The reads (and forks) placing a request is built on: how much of a request the store
already has, whether a request resends a named conversation, which of an appended
request's messages are new, a conversation's row and path, the fork of a conversation at a
point, and the branch of its own a request ending inside a longer conversation gets
(proxy.loop.conversations).

A fork of a whole-history request may be created deferred (PageStore.create_conversation's
`durable`): reading its row or path would then wait for the store's writer, so its path is
made from its parent's (`branch_path`), which a fork's row names and never changes."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.loop.held import HeldWrite, root_path
from proxy.loop.offload import hashed
from proxy.loop.placement import Placement, StateAt, cut_path
from proxy.loop.prefix_cache import PrefixCache
from proxy.store.base import Conversation, PageStore, Path, PathSpan, UnknownConversation
from proxy.upstream.responses_format import is_instructions

# How many of the newest hashes are looked up at once before falling back to a binary
# search: a turn usually brings one or two new messages.
_TAIL_PROBE = 4


async def longest_known_prefix(
    store: PageStore, tenant: str, hashes: Sequence[str]
) -> tuple[int, str | None]:
    """(number of leading messages already stored, conversation owning the last one).
    Chain hashes commit to their whole prefix, so "h_k is known" implies "h_0..h_k are
    known": the newest few are looked up first, then a binary search."""
    n = len(hashes)
    if n == 0:
        return 0, None
    tail = list(range(n - 1, max(-1, n - 1 - _TAIL_PROBE), -1))
    found = await store.lookup_hashes(tenant, [hashes[i] for i in tail])
    for i in tail:
        hit = found.get(hashes[i])
        if hit is not None:
            return i + 1, hit[0]
    # None of the newest are known: binary search for the last known index.
    lo, hi, owner = 0, n - len(tail), None
    while lo < hi:
        mid = (lo + hi) // 2
        hit = (await store.lookup_hashes(tenant, [hashes[mid]])).get(hashes[mid])
        if hit is not None:
            lo, owner = mid + 1, hit[0]
        else:
            hi = mid
    # `owner` is the owner of hashes[lo - 1], found with it (None when lo is 0).
    return lo, owner


async def starts_with_stored(
    store: PageStore, tenant: str, stored: Conversation, messages: Sequence[dict[str, Any]]
) -> bool:
    """Is this a full resend of the named conversation? Only when the request's first
    two non-system messages are the conversation's own: a client in append mode may
    resend its system prompt with every turn, and may say "hi" again, as it did first."""
    others = [
        i for i, m in enumerate(messages) if m.get("role") not in ("system", "developer")
    ]
    if len(others) < 2:
        return False
    head = (await hashed(tenant, messages[: others[1] + 1]))[-1]
    hit = (await store.lookup_hashes(tenant, [head])).get(head)
    if hit is None:
        return False
    path = await store.path(tenant, stored.conv_id)
    return path.owner_of(hit[1]) == hit[0]


async def fork_conversation(
    store: PageStore, tenant: str, parent: Conversation, anchor: int, first: str, *,
    durable: bool = True,
) -> Conversation:
    """The conversation forking `parent` after `anchor`, its id derived from what it forks
    and `first` (so two identical requests racing converge on one fork)."""
    digest = hashlib.blake2b(
        f"{parent.conv_id}/{anchor + 1}/{first}".encode(), digest_size=12
    ).hexdigest()
    return await store.create_conversation(
        tenant, "c" + digest, parent_id=parent.conv_id, fork_at=anchor + 1, durable=durable
    )


async def branch_path(
    store: PageStore, tenant: str, conv: Conversation, parent_path: Path | None = None
) -> Path:
    """`conv`'s whole path, made from its row and its parent's path (`parent_path`, or
    read), not read itself: `conv` may have been created deferred (see above)."""
    if conv.parent_id is None:
        return root_path(tenant, conv.conv_id)
    if parent_path is None or parent_path.leaf != conv.parent_id:
        parent_path = await store.path(tenant, conv.parent_id)
    own = PathSpan(conv.conv_id, conv.fork_at, None)
    return Path(tenant, (own, *cut_path(parent_path, conv.fork_at).spans))


async def require(store: PageStore, tenant: str, conv_id: str) -> Conversation:
    conv = await store.get_conversation(tenant, conv_id)
    if conv is None:
        raise UnknownConversation(f"conversation {conv_id} vanished while storing a turn")
    return conv


async def paths(
    store: PageStore, tenant: str, conv_id: str, end: int, path: Path | None = None
) -> tuple[Path, Path]:
    """`conv_id`'s path cut at `end`, and whole (`path`, when it is that path)."""
    if path is None or path.leaf != conv_id:
        path = await store.path(tenant, conv_id)
    return cut_path(path, end), path


async def path_or_none(store: PageStore, tenant: str, conv_id: str) -> Path | None:
    try:
        return await store.path(tenant, conv_id)
    except UnknownConversation:
        return None


async def own_fork(
    store: PageStore, tenant: str, parent: Conversation, anchor: int, *, durable: bool = True
) -> Conversation:
    """A fresh fork of `parent` after `anchor`, never shared: a request ending there (a
    regenerate) gets a branch of its own, even beside an identical request."""
    return await fork_conversation(
        store, tenant, parent, anchor, "cut:" + secrets.token_hex(8), durable=durable
    )


async def own_branch(
    store: PageStore, tenant: str, placement: Placement, *, durable: bool = True
) -> Placement:
    """A request that ends inside a longer conversation (a regenerate; another client of
    the tenant opening with the same words) gets a conversation of its own, ending where
    it ends: its answer goes there and X-VM-Session names it, never the longer one,
    whose later turns are not this request's. A fresh fork per request, so that two
    regenerates of one turn never share a branch."""
    if placement.leaf.length <= placement.offset + placement.length:
        return placement
    return await forked(store, tenant, placement, durable=durable)


async def forked(
    store: PageStore, tenant: str, placement: Placement, *, durable: bool = True
) -> Placement:
    """`placement` moved onto a fresh fork of its conversation at its end: what follows it
    (the answer) goes there (a turn beside another of the same history, proxy.loop.handler)."""
    end = placement.offset + placement.length
    fork = await own_fork(store, tenant, placement.leaf, end - 1, durable=durable)
    full = await branch_path(store, tenant, fork, placement.leaf_path)
    return dataclasses.replace(placement, leaf=fork, path=cut_path(full, end), leaf_path=full)


async def held_on_a_fork(store: PageStore, tenant: str, held: HeldWrite) -> HeldWrite:
    """`held` moved onto a fresh fork of its conversation where its messages go (another
    request in flight holds that tip: proxy.loop.tip_claims)."""
    fork = await own_fork(store, tenant, held.target, held.anchor, durable=False)
    return dataclasses.replace(held, target=fork,
                               path=await branch_path(store, tenant, fork, held.path))


def ends_unanswered(stored: Conversation, state: Mapping[str, Any]) -> bool:
    """Does the conversation end with a user message that got no answer?"""
    users = (state.get("counters") or {}).get("user_positions") or []
    return stored.length >= 1 and bool(users) and users[-1] == stored.length - 1


async def new_after(
    store: PageStore,
    state_at: StateAt,
    tenant: str,
    stored: Conversation,
    path: Path,
    end: int,
    messages: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], int, int, str]:
    """Which of `messages`, sent to follow position `end - 1` of `stored`'s `path`, are
    new: (them, the position they follow, the position of the request's first message,
    the chain hash they chain onto)."""
    at_tip = stored.length == end
    state = await state_at(store, tenant, path, end - 1, stored if at_tip else None)
    prev = str(state["hash"])
    # A Responses request's instructions are its own, not the conversation's (OpenAI does
    # not carry them over to the next response): its history is sent with them in front
    # (responses_format.with_instructions), they are not stored after it.
    new = [m for m in messages if not is_instructions(m)]
    # A resent system prompt identical to the stored one is not a new message.
    root_hashes = await hashed(tenant, new[:1]) if new else []
    if new and new[0].get("role") in ("system", "developer"):
        found = await store.lookup_hashes(tenant, root_hashes)
        hit = found.get(root_hashes[0])
        if hit is not None and hit[1] == 0 and path.owner_of(0) == hit[0]:
            new = new[1:]
    offset = anchor = end - 1
    offset += 1
    if at_tip and new and new[0].get("role") == "user" and ends_unanswered(stored, state):
        before = await state_at(store, tenant, path, stored.length - 2, None)
        again = (await hashed(tenant, new[:1], prev=str(before["hash"]) or None))[0]
        if again == state["hash"]:
            # The client resends a question whose answer never reached it (a timeout, a
            # crash): that message is the one already stored last, not a new one.
            new, offset = new[1:], offset - 1
        else:
            # The turn of the stored question failed (no answer was stored) and the
            # client moved on: the new message takes its place, on a fork, so that the
            # conversation never has two user messages in a row.
            anchor, offset, prev = anchor - 1, offset - 1, str(before["hash"])
    return new, anchor, offset, prev


def root_id(hashes: Sequence[str]) -> str:
    """The id of the conversation a history none of whose messages is stored starts: its
    first message's chain hash (`hashes`: the history's)."""
    return "c" + hashes[0][:24]


async def answered_before_retry(
    store: PageStore,
    tenant: str,
    stored: Conversation,
    messages: Sequence[dict[str, Any]],
    delivered: Callable[[float], bool],
) -> Placement | None:
    """A client's retry (`retried_by_client`) of a turn sent with only its new messages,
    whose answer was stored but never reached the client (the proxy died, or the
    connection broke, between the two): the conversation ends with those messages and one
    answer after them, which no response since it was stored delivered (`delivered(at)`:
    proxy.loop.deliveries). They are the stored ones, not new, and the retry's answer goes
    on a fork after them, which the session then names, as a regenerate's does. Else None.

    The same question sent again without a retry's header is a new turn, as before: only
    the client knows the first answer never reached it."""
    asked = [m for m in messages if not is_instructions(m)]  # (as new_after)
    if len(asked) > 1 and asked[0].get("role") in ("system", "developer"):
        asked = asked[1:]  # a client in append mode may resend its system prompt each turn
    end = stored.length - 1  # where the stored answer is
    offset = end - len(asked)
    if not asked or offset < 0:
        return None
    path = await store.path(tenant, stored.conv_id)
    pages = {
        p.anchor: p
        for p in await store.pages_in_range(path, max(offset - 1, 0), stored.length)
        if p.is_message
    }
    answer = pages.get(end)
    if answer is None or answer.role != "assistant" or delivered(answer.created_at):
        return None  # (delivered: the retried request was another, lost on its way here)
    prev = pages[offset - 1].chain_hash if offset - 1 in pages else None
    if offset > 0 and prev is None:
        return None
    hashes = await hashed(tenant, asked, prev=prev)
    if [pages[p].chain_hash if p in pages else None for p in range(offset, end)] != hashes:
        return None
    placement = Placement(
        leaf=stored, path=cut_path(path, end), offset=offset, length=len(asked),
        last_hash=hashes[-1], new_count=0, appended=True, leaf_path=path,
    )
    return await forked(store, tenant, placement)


def retried_by_client(headers: Mapping[str, str]) -> bool:
    """Is the request an SDK's retry of one that failed (timed out, lost its connection,
    got a 5xx)? OpenAI's SDKs (Python, Node, and what is built on them) count their
    retries in `x-stainless-retry-count`."""
    count = headers.get("x-stainless-retry-count")
    return count is not None and count.strip().isdigit() and int(count) > 0


@dataclass(frozen=True, slots=True)
class Known:
    """A conversation row and its path read ahead of the conversation lock: used as it is
    when it shows the conversation ending where new messages go (proxy.loop.conversations,
    "Round trips")."""

    conv: Conversation
    path: Path


async def remembered_start(
    store: PageStore, prefixes: PrefixCache, tenant: str, fingerprints: list[int], *,
    rows: bool = True,
) -> tuple[int, str | None, str | None, Known | None]:
    """Where a resent history's stored part ends, as far as the prefix cache remembers it:
    (how many of its messages are stored, the conversation owning the last of them, its
    chain hash, that conversation's row and path when known). (0, None, None, None) when
    the cache remembers none of it. `rows=False`: the rows the cache saw are not trusted
    (the conversation they name is gone)."""
    remembered = prefixes.longest(tenant, fingerprints)
    if remembered is None:
        return 0, None, None, None
    seen = prefixes.row(tenant, remembered.conv_id) if rows else None
    if (
        seen is not None
        and seen[0].length == remembered.count
        and seen[0].state.get("hash") == remembered.chain_hash
    ):
        # The last row seen ends with the prefix: the append will tell if it still does.
        return remembered.count, remembered.conv_id, remembered.chain_hash, Known(*seen)
    count, last = remembered.count, remembered.chain_hash
    # The lookup and the rows of the conversation that owned the prefix then, in one round:
    # the row is a hint, the lookup the fact.
    found, conv, path = await asyncio.gather(
        store.lookup_hashes(tenant, [last]),
        store.get_conversation(tenant, remembered.conv_id),
        path_or_none(store, tenant, remembered.conv_id),
    )
    hit = found.get(last)
    if hit is None or hit[1] != count - 1:
        return 0, None, None, None
    return count, hit[0], last, (Known(conv, path) if conv is not None and path is not None
                                 else None)
