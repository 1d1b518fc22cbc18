"""Quoting conversation text inside the developer message so it cannot pose as our markup.

Two things in the developer message are ours alone: the `<VM:...>` / `</VM:...>` tags, and
block header lines that start with a page id in brackets (`[msg_12 user] ...`). Conversation
text placed there goes through `escape_block`, after which
- no `<VM:` or `</VM:` can appear (any case, any whitespace after `<` or `/`): the `<` becomes
  the look-alike `‹`, which reads the same to a model and parses as nothing;
- no line starts with `[` followed by something shaped like a page id: such a line gets a
  leading backslash, so only the packer's own headers begin a block (line breaks other than
  `\n`, e.g. `\r` or U+2028, are first made `\n` so they cannot start a line unseen).
JSON put into the manifest is escaped separately (`<` as `\\u003c`, see manifest.py).
"""

from __future__ import annotations

import re
from functools import lru_cache

_TAG = re.compile(r"<(\s*/?\s*)(vm\s*:)", re.IGNORECASE)
# A line that a reader could take for a block header: `[` + page-id-like word.
_HEADER_LIKE = re.compile(
    r"^([ \t]*)(?=\[\s*(?:msg|seg|claim|img)\s*_?\s*\d)", re.IGNORECASE | re.M
)


_LINE_BREAKS = re.compile(r"\r\n?|[\v\f\x1c-\x1e\x85\u2028\u2029]")


def escape_block(text: str) -> str:
    """`text` made safe for the developer message. Texts of pages recur turn after turn, so
    short ones are memoised (bounded: at most 4096 entries of at most 8 KB)."""
    return _escape_memo(text) if len(text) <= 8192 else _escape(text)


@lru_cache(maxsize=4096)
def _escape_memo(text: str) -> str:
    return _escape(text)


def _escape(text: str) -> str:
    # Every other line break becomes "\n", so "start of a line" means one thing below.
    text = _LINE_BREAKS.sub("\n", text)
    if "<" in text:
        text = _TAG.sub(r"‹\1\2", text)
    if "[" in text:
        text = _HEADER_LIKE.sub(r"\1\\", text)
    return text
