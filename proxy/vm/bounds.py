"""How much of one page's text the proxy analyses.

A page keeps its whole text (level 0 is verbatim, whatever its size), but what is derived
from the text (the reduced and abstract renderings, the hint, claims, search terms) is
derived from its first `INDEX_CHARS` characters, so that one huge message (a pasted log, a
30 MB body) costs bounded time to ingest and index (issue 13). Token counts are bounded
the same way in proxy.tokens (exact up to a prefix, estimated beyond).
"""

from __future__ import annotations

# 64k characters are some 16k tokens of prose: more than any page's excerpt or abstract
# draws on, and a few tens of milliseconds of analysis.
INDEX_CHARS = 65_536


def analysed(text: str) -> str:
    """The part of `text` that is analysed: all of it, up to INDEX_CHARS."""
    return text if len(text) <= INDEX_CHARS else text[:INDEX_CHARS]
