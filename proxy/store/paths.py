"""A conversation's chain of forks as the spans of its visible path, and stable keys."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from proxy.store.base import Path, PathSpan, UnknownConversation
from proxy.store.codec import decode_page
from proxy.vm.pages import Page

# A fork chain deeper than this is a cycle or corruption, not a conversation.
MAX_FORK_DEPTH = 10_000


def build_path(
    tenant: str, conv_id: str, fork_of: Callable[[str], tuple[str | None, int] | None]
) -> Path:
    """`fork_of(conv)` gives (parent_id, fork_at) or None for an unknown conversation.

    A conversation owns its positions from its own `fork_at` up to where the nearest
    descendant on the path forked away (so a grandchild forking below its parent's fork
    point reads straight from the grandparent).
    """
    spans: list[PathSpan] = []
    hi: int | None = None
    current: str | None = conv_id
    seen: set[str] = set()
    while current is not None:
        row = fork_of(current)
        if row is None or current in seen or len(seen) >= MAX_FORK_DEPTH:
            raise UnknownConversation(current)
        seen.add(current)
        parent_id, fork_at = row
        lo = fork_at if parent_id is not None else 0
        if hi is None or lo < hi:
            spans.append(PathSpan(current, lo, hi))
            hi = lo
        current = parent_id
    return Path(tenant, tuple(spans))


def span_bounds(path: Path) -> list[tuple[str, int, int]]:
    """(conv_id, lo, hi) per span with an unbounded `hi` made a large integer, for SQL."""
    return [(s.conv_id, s.lo, s.hi if s.hi is not None else 2**62) for s in path.spans]


def clipped_spans(path: Path, lo: int, hi: int) -> list[tuple[str, int, int]]:
    """`span_bounds(path)` cut to `lo <= anchor < hi`, the spans left empty left out."""
    return [
        (conv_id, max(lo, span_lo), min(hi, span_hi))
        for conv_id, span_lo, span_hi in span_bounds(path)
        if max(lo, span_lo) < min(hi, span_hi)
    ]


def nearest_the_leaf(
    path: Path, rows: Iterable[tuple[str, str, bytes]], page_ids: Sequence[str]
) -> dict[str, Page]:
    """The pages of `page_ids` among `rows` of (conv_id, page_id, body), all visible on
    `path`: an id stored on two of its spans is the one nearest the leaf."""
    rank = {span.conv_id: i for i, span in enumerate(path.spans)}
    best: dict[str, tuple[int, bytes]] = {}
    for conv_id, page_id, body in rows:
        if page_id not in best or rank[conv_id] < best[page_id][0]:
            best[page_id] = (rank[conv_id], body)
    return {page_id: decode_page(best[page_id][1]) for page_id in page_ids if page_id in best}


def stable_key(*parts: str) -> int:
    """A signed 64-bit key for `parts` (advisory locks), the same in every process."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def term_prefix(tenant: str, conv_id: str) -> str:
    """8 hex digits put before each search term of a conversation's pages in the durable
    indexes, so a conversation's terms have postings of their own: a search reads only the
    searched conversations' postings. Short on purpose (it is repeated in every term); two
    conversations sharing a prefix only share postings, which the tenant and path checks
    of every search filter out again. SHA-256 because PostgreSQL computes it too (gc finds
    a conversation's postings by their prefix)."""
    return hashlib.sha256(f"{tenant}\x1f{conv_id}".encode()).hexdigest()[:8]
