"""How much of one page's text the proxy analyses.

A page keeps its whole text (level 0 is verbatim, whatever its size), but what is derived
from the text (the reduced and abstract renderings, the hint, claims, search terms) is
derived from its first `INDEX_CHARS` characters, so that one huge message (a pasted log, a
30 MB body) costs bounded time to ingest and index (issue 13). Token counts are bounded
the same way in proxy.tokens (exact up to a prefix, estimated beyond).

What must still see the whole text (hashing it, looking for code fences) goes through it
in slices of SLICE_CHARS: one C call over 30 MB holds the GIL for tens of milliseconds,
during which no other thread (the event loop included) runs; between slices it can.
"""

from __future__ import annotations

from collections.abc import Iterator

# 64k characters are some 16k tokens of prose: more than any page's excerpt or abstract
# draws on, and a few tens of milliseconds of analysis.
INDEX_CHARS = 65_536


def analysed(text: str) -> str:
    """The part of `text` that is analysed: all of it, up to INDEX_CHARS."""
    return text if len(text) <= INDEX_CHARS else text[:INDEX_CHARS]


# A quarter million characters encode or scan in well under a millisecond.
SLICE_CHARS = 1 << 18


def encoded_slices(text: str, errors: str = "strict") -> Iterator[bytes]:
    """`text` in UTF-8, a slice at a time: joined, they are `text.encode(errors=errors)`."""
    if len(text) <= SLICE_CHARS:
        yield text.encode(errors=errors)
        return
    for start in range(0, len(text), SLICE_CHARS):
        yield text[start : start + SLICE_CHARS].encode(errors=errors)


def has_at_least(text: str, part: str, count: int) -> bool:
    """Whether `text.count(part) >= count`, scanning a slice at a time and stopping once
    `count` occurrences (non-overlapping, as `str.count` counts them) are found."""
    if len(text) <= SLICE_CHARS:
        return text.count(part) >= count
    found, at, reach = 0, 0, len(part) - 1
    while found < count and at < len(text):
        # An occurrence starting before at + SLICE_CHARS ends within this window.
        hit = text.find(part, at, at + SLICE_CHARS + reach)
        if hit < 0:
            at += SLICE_CHARS
        else:
            found, at = found + 1, hit + len(part)
    return found >= count
