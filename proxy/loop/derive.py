"""Lean pages for short chats, and their derivation when a conversation first needs memory
(issue 15).

A request below `vm.activate_above` is forwarded unchanged; storing its messages must cost
little. They are stored as lean pages (proxy.vm.lean): the message, its chain hash and
cost, and the counters later messages depend on. What only a memory-active turn reads is
made the first time a turn of the conversation needs memory: the lean pages since
`Counters.derived` are ingested again in full, in order, from the state stored right
before them, and stored over the lean ones (with their claims, images, summaries and
search terms), each with the conversation that owns its position. Derivation is
deterministic for a given path, so two forks deriving a shared stretch store the same
pages (an append keeps a derived page already stored).

Snapshots. Every message page keeps the conversation state right after it
(`extra["after"]`, what a fork from there starts with). Only what differs from a new
conversation's counters is kept, and not the chain hash, which is the page's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

from proxy.loop.placement import Ingest, NewPages, StateAt
from proxy.store.base import PageStore, Path, VersionConflict
from proxy.tokens import TokenCounter
from proxy.vm.ingest import Counters
from proxy.vm.lean import lean_page
from proxy.vm.pages import Page

# Left out of per-page snapshots: only deduplication of claims uses them, and they are the
# bulk of the counters.
NOT_SNAPSHOTTED = ("claim_keys", "recent_claims")
_DEFAULTS = Counters().to_dict()
_RETRIES = 8


# The counters a snapshot keeps, with their defaults, in `Counters.to_dict`'s order.
_SNAPSHOTTED = tuple((k, v) for k, v in _DEFAULTS.items() if k not in NOT_SNAPSHOTTED)


def snapshot(counters: Counters, tokens: int) -> dict[str, Any]:
    """The state after a message, as its page keeps it (see the module docstring): what
    `counters.to_dict()` holds but its defaults, read off the counters directly (every
    message page of every short chat takes one)."""
    kept: dict[str, Any] = {}
    for key, default in _SNAPSHOTTED:
        value = getattr(counters, key)
        if value == default:
            continue
        if key == "derived" and value == counters.messages:
            continue  # the default Counters.from_dict reads
        if type(value) is list:
            # Copies, as to_dict's: the counters go on changing.
            value = [list(v) for v in value] if key == "rollups" else list(value)
        elif type(value) is dict:
            value = dict(value)
        kept[key] = value
    return {"tokens": tokens, "counters": kept}


def state_from_page(page: Page) -> dict[str, Any]:
    """The conversation state right after a message page (its snapshot, hash restored)."""
    state = dict(page.extra["after"])
    state.setdefault("hash", page.chain_hash)
    return state


def lean_ingest(
    first: int,
    messages: Sequence[dict[str, Any]],
    hashes: Sequence[str],
    before: Mapping[str, Any],
    counter: TokenCounter,
    now: float,
    carried: Sequence[str],
) -> NewPages:
    """Lean pages of `messages` (at `first`, `first + 1`, ...) and the state after them."""
    counters = Counters.from_dict(before.get("counters"))
    tokens = int(before.get("tokens", 0))
    pages = []
    for offset, message in enumerate(messages):
        page = lean_page(
            message, first + offset, counters, counter, chain=hashes[offset], now=now
        )
        tokens += int(page.extra["msg_tokens"])
        page.extra["after"] = snapshot(counters, tokens)
        pages.append(page)
    state = {
        **{k: v for k, v in before.items() if k in carried},
        "hash": hashes[-1] if hashes else before.get("hash", ""),
        "tokens": tokens,
        "counters": counters.to_dict(),
    }
    return NewPages(pages=pages, state=state)


async def lean_since(
    store: PageStore,
    tenant: str,
    path: Path,
    first: int,
    before: Mapping[str, Any],
    state_at: StateAt,
) -> tuple[int, list[dict[str, Any]], list[str], dict[str, Any]]:
    """What deriving from `Counters.derived` up to `first` starts from: that position, the
    lean messages and their chain hashes, and the state before them (its counters of
    messages as stored then, its derived counters `before`'s: lean pages never move them)."""
    counters = Counters.from_dict(before.get("counters"))
    start = counters.derived
    if start >= first:
        return first, [], [], dict(before)
    pages = await store.pages_in_range(path, start, first)
    if [p.anchor for p in pages] != list(range(start, first)):
        raise LookupError(f"lean pages {start}..{first - 1} of {path.leaf} are not all stored")
    at_start = dict(await state_at(store, tenant, path, start - 1, None))
    raw = Counters.from_dict(at_start.get("counters"))
    for name in ("claims", "images", "segments", "segment_from", "segment_from_turn",
                 "rollups", "recent_claims", "claim_keys"):  # fmt: skip
        setattr(raw, name, getattr(counters, name))
    raw.derived = start
    at_start["counters"] = raw.to_dict()
    messages = [dict(p.message or {"role": p.role, "content": p.text}) for p in pages]
    return start, messages, [p.chain_hash for p in pages], at_start


def split_by_owner(path: Path, pages: Sequence[Page]) -> tuple[list[Page], dict[str, list[Page]]]:
    """The pages `path`'s leaf owns, and the others by the conversation owning their anchor
    (a stretch derived on a fork that its parent holds)."""
    own: list[Page] = []
    elsewhere: dict[str, list[Page]] = {}
    for page in pages:
        owner = path.owner_of(page.anchor)
        if owner is None or owner == path.leaf:
            own.append(page)
        else:
            elsewhere.setdefault(owner, []).append(page)
    return own, elsewhere


async def store_elsewhere(
    store: PageStore, tenant: str, elsewhere: Mapping[str, Sequence[Page]],
    held: str | None = None,
) -> None:
    """Derived pages of positions other conversations own, stored with them (their length
    and state unchanged). `held`: a conversation whose lock the caller holds already (the
    one a turn forks: taken again, the lock would wait for itself forever)."""
    for owner, pages in elsewhere.items():
        for _ in range(_RETRIES):
            async with nullcontext() if owner == held else store.lock(tenant, owner):
                conv = await store.get_conversation(tenant, owner)
                if conv is None:
                    raise LookupError(f"conversation {owner} vanished while deriving")
                try:
                    await store.append(
                        tenant, owner, pages, expected_version=conv.version,
                        new_length=conv.length,
                    )
                except VersionConflict:
                    continue
                break
        else:
            raise VersionConflict(f"conversation {owner} kept changing while deriving")


async def derive_conversation(
    store: PageStore, ingest: Ingest, tenant: str, conv_id: str
) -> None:
    """Derive every lean page of `conv_id`'s path (a turn needs memory, and its request
    stored nothing new that would have)."""
    for _ in range(_RETRIES):
        async with store.lock(tenant, conv_id):
            conv = await store.get_conversation(tenant, conv_id)
            if conv is None:
                raise LookupError(f"conversation {conv_id} vanished while deriving")
            if Counters.from_dict(conv.state.get("counters")).derived >= conv.length:
                return
            path = await store.path(tenant, conv_id)
            made = await ingest(store, tenant, path, conv.length, [], [], dict(conv.state))
            if made.elsewhere:
                await store_elsewhere(store, tenant, made.elsewhere)
            try:
                await store.append(
                    tenant, conv_id, made.pages, expected_version=conv.version,
                    new_length=conv.length, state=made.state, mutations=made.mutations,
                )
            except VersionConflict:
                continue
            return
    raise VersionConflict(f"conversation {conv_id} kept changing while deriving")
