"""Quoting conversation text inside the developer message so it cannot pose as our markup.

Two things in the developer message are ours alone: the `<VM:...>` / `</VM:...>` tags, and
block header lines that start with a page id in brackets (`[msg_12 user] ...`). Conversation
text placed there goes through `escape_block`, after which
- no `<VM:` or `</VM:` can appear (any case, any whitespace after `<` or `/`): the `<` becomes
  the look-alike `‹`, which reads the same to a model and parses as nothing;
- no line starts with `[` followed by something shaped like a page id: such a line gets a
  leading backslash, so only the packer's own headers begin a block (line breaks other than
  `\n`, e.g. `\r` or U+2028, are first made `\n` so they cannot start a line unseen).
Look-alikes count (issue 13): a text whose *skeleton* (NFKC-normalised, so fullwidth `＜`
and `［` are `<` and `[` and a no-break space is a space; invisible characters such as
U+200B dropped; a few Cyrillic and Greek letters, colons and slashes read as the Latin ones)
would show markup is given in that plain skeleton form, escaped. Texts that show none keep
every character. JSON put into the manifest is escaped separately (`escape_json`).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_TAG = re.compile(r"<(\s*/?\s*)(vm\s*:)", re.IGNORECASE)
# A line that a reader could take for a block header: `[` + page-id-like word.
_HEADER_LIKE = re.compile(
    r"^([ \t]*)(?=\[\s*(?:msg|seg|claim|img)\s*_?\s*\d)", re.IGNORECASE | re.M
)


_LINE_BREAKS = re.compile(r"\r\n?|[\v\f\x1c-\x1e\x85\u2028\u2029]")
# Characters a reader does not see: format controls (zero-width space and joiners, word
# joiner, bidi controls, BOM, soft hyphen, tags), variation selectors, the combining
# grapheme joiner, and the Hangul fillers that render blank.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]"
)
# Look-alikes NFKC leaves alone, of the characters our markup is made of.
_CONFUSABLES = str.maketrans(
    {
        **dict.fromkeys("\u02c2\u1438\u2329\u3008\u27e8\u276e", "<"),
        **dict.fromkeys("\u2044\u2215\u29f8\u2571", "/"),
        **dict.fromkeys("\u02d0\ua789\u2236\u0589\u05c3\u16ec", ":"),
        **dict.fromkeys("\u0410\u0391", "A"), **dict.fromkeys("\u0430\u03b1", "a"),
        **dict.fromkeys("\u0421\u03f9", "C"), **dict.fromkeys("\u0441\u03f2", "c"),
        **dict.fromkeys("\u0415\u0395", "E"), "\u0435": "e",
        **dict.fromkeys("\u0406\u0399\u04c0", "I"), **dict.fromkeys("\u0456\u03b9", "i"),
        **dict.fromkeys("\u04cf\u01c0", "l"),
        **dict.fromkeys("\u041c\u039c\u03fa", "M"), **dict.fromkeys("\u043c\u1d0d", "m"),
        "\u0405": "S", "\u0455": "s", "\u0261": "g",
        **dict.fromkeys("\u0474\u2164", "V"), **dict.fromkeys("\u0475\u03bd\u1d20", "v"),
    }
)
# `<` and its look-alikes, as JSON escapes: no manifest string can close the section.
_JSON_LT = re.compile("[<\uff1c\ufe64\u02c2\u1438\u2329\u3008\u27e8\u276e]")


def escape_block(text: str) -> str:
    """`text` made safe for the developer message. Texts of pages recur turn after turn, so
    short ones are memoised (bounded: at most 4096 entries of at most 8 KB)."""
    return _escape_memo(text) if len(text) <= 8192 else _escape(text)


def escape_json(encoded: str) -> str:
    """JSON text with `<` and its look-alikes written as `\\uXXXX` escapes."""
    return _JSON_LT.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)


def skeleton(text: str) -> str:
    """What `text` reads as: NFKC, invisible characters dropped, look-alikes mapped."""
    plain = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    return _LINE_BREAKS.sub("\n", plain.translate(_CONFUSABLES))


@lru_cache(maxsize=4096)
def _escape_memo(text: str) -> str:
    return _escape(text)


def _escape(text: str) -> str:
    # Every other line break becomes "\n", so "start of a line" means one thing below.
    text = _LINE_BREAKS.sub("\n", text)
    if not text.isascii():
        seen = skeleton(text)
        if seen != text and (_TAG.search(seen) or _HEADER_LIKE.search(seen)):
            text = seen
    if "<" in text:
        text = _TAG.sub(r"‹\1\2", text)
    if "[" in text:
        text = _HEADER_LIKE.sub(r"\1\\", text)
    return text
