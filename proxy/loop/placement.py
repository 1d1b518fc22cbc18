"""What placing a request in the store yields, and the functions placing it is given: the
types shared by proxy.loop.conversations, storing, prepare and the turn."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.store.base import Conversation, PageStore, Path, PathSpan
from proxy.vm.mutations import Mutation
from proxy.vm.pages import Page


@dataclass(frozen=True, slots=True)
class NewPages:
    """What ingest made of new messages: their pages and the conversation state after them."""

    pages: list[Page]
    state: dict[str, Any]
    mutations: list[Mutation] = field(default_factory=list)
    # Pages derived for positions other conversations own (proxy.loop.derive), by owner.
    elsewhere: dict[str, list[Page]] = field(default_factory=dict)


# (store, tenant, path so far, position of the first new message, the messages, their chain
# hashes, the conversation state before them) -> pages and state after them.
Ingest = Callable[
    [PageStore, str, Path, int, Sequence[dict[str, Any]], Sequence[str], dict[str, Any]],
    Awaitable[NewPages],
]

# (store, tenant, path, position, the path's leaf if already read) -> the state after the
# message at that position.
StateAt = Callable[[PageStore, str, Path, int, Conversation | None], Awaitable[dict[str, Any]]]

# Told, right before the append storing a request's messages is issued, the path they will
# be on (cut at the request's end) and the state stored with them: proxy.loop.early_search.
AppendHook = Callable[[Path, Mapping[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one request's messages are, once stored.

    `offset` is the position of the request's first message in the conversation (0 for a
    full resend); `path` is the leaf conversation's history cut at the request's end, so
    pages stored later on the same conversation (an answer being regenerated) are not seen.
    """

    leaf: Conversation
    path: Path
    offset: int
    length: int
    last_hash: str
    new_count: int
    appended: bool
    # Of the whole resent history (empty in append mode): see prefix_cache.
    fingerprints: list[int] = field(default_factory=list)
    # The leaf's whole path (not cut), for storing what follows the request.
    leaf_path: Path | None = None


def cut_path(path: Path, end: int) -> Path:
    """`path` without the positions from `end` on."""
    spans = tuple(
        PathSpan(span.conv_id, span.lo, end if span.hi is None or span.hi > end else span.hi)
        for span in path.spans
        if span.lo < end
    )
    return Path(tenant=path.tenant, spans=spans)
