"""Page <-> JSON bytes, the text a page is searched by, and whether pages are heavy to
write.

The body is self-contained (every field of the page), so a row's other columns are only
indexes; tuples come back as tuples and enums as enums, so a page read back compares equal
to the page written.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import orjson

from proxy.vm.bm25 import search_tokens
from proxy.vm.bounds import analysed
from proxy.vm.lean import LEAN, is_lean, lean_view
from proxy.vm.pages import Modality, Page, PageKind

# An inline image or file: its base64 would only flood the index with noise tokens.
_DATA_URL = re.compile(r"data:[\w/+.-]*(?:;[\w=.-]+)*,[A-Za-z0-9+/=%]+")
_KINDS = {kind.value: kind for kind in PageKind}
_MODALITIES = {modality.value: modality for modality in Modality}
# Bodies kept decoded (see decode_page): up to SMALL_BODY bytes each, DECODED_PAGES of
# them (16 MB of bodies at most); larger ones, LARGE_PAGES of them and DECODED_BYTES in
# all (the decoded pages take about twice as much again).
DECODED_PAGES = 4096
SMALL_BODY = 4096
LARGE_PAGES = 1024
DECODED_BYTES = 48 << 20
# Pages of more characters than this may keep a store's writer long (encoding, indexing):
# the SQLite store lets nobody wait on its writer while they are written
# (proxy.store.sqlite_calls, `_catch_up`).
HEAVY_WRITE_CHARS = 64 * 1024


# How a lean page's body starts (stores find the pages an append may replace by it).
LEAN_PREFIX = b'{"lean":1,'


# The items a message of a Responses conversation carries as they came
# (proxy.upstream.responses_format.ITEMS; the store does not import that layer).
CARRIED = "vm_items"
# A body whose message carries an answer's item without its text (see _stored_message).
# (Not "said": a page's `extra` has a "said", the date the message was said.)
_TEXT_ONCE = "text_once"


def _stored_message(message: Mapping[str, Any] | None) -> tuple[Any, bool]:
    """The message as a body holds it, and whether its carried item's text was left out.

    A Responses client's answer is carried as the item the API gave (one `output_text`
    part), whose text is the message's content again: the body keeps it once, in the
    content, and a 0 in the part's place, which decoding fills back (in that place, so
    the item's fields keep their order)."""
    if message is None:
        return message, False
    items = message.get(CARRIED)
    if type(items) is not list or len(items) != 1 or type(item := items[0]) is not dict:
        return message, False
    parts = item.get("content")
    if type(parts) is not list or len(parts) != 1 or type(part := parts[0]) is not dict:
        return message, False
    text = message.get("content")
    if type(text) is not str or not text or part.get("text") != text:
        return message, False
    # Copies: the page's own message is shared, never changed.
    return {**message, CARRIED: [{**item, "content": [{**part, "text": 0}]}]}, True


def _restored_message(message: dict[str, Any]) -> dict[str, Any]:
    """_stored_message undone, in place: the message is fresh from the body's parse."""
    message[CARRIED][0]["content"][0]["text"] = message["content"]
    return message


def encode_page(page: Page) -> bytes:
    message, text_once = _stored_message(page.message)
    if is_lean(page):
        # Only what its Page is rebuilt from (proxy.vm.lean.lean_view): the rest is the
        # message's text again.
        lean: dict[str, Any] = {
            LEAN: 1,
            "page_id": page.page_id,
            "anchor": page.anchor,
            "turn": page.turn,
            "role": page.role,
            "chain_hash": page.chain_hash,
            "message": message,
            "created_at": page.created_at,
            "extra": {k: v for k, v in page.extra.items() if k != LEAN},
        }
        if text_once:
            lean[_TEXT_ONCE] = 1
        return orjson.dumps(lean)
    renderings: tuple[str | None, ...] = page.renderings
    if page.message is not None and page.message.get("content") == page.text:
        # A message's level 0 is its content: stored once, in the message (a 2.7 MB
        # message took 5.4 MB of body before).
        renderings = (None, *page.renderings[1:])
    whole: dict[str, Any] = {
        "page_id": page.page_id,
        "kind": page.kind.value,
        "modality": page.modality.value,
        "anchor": page.anchor,
        "turn": page.turn,
        "role": page.role,
        "renderings": renderings,
        "tokens": page.tokens,
        "hint": page.hint,
        "chain_hash": page.chain_hash,
        "message": message,
        "importance": page.importance,
        "covers": page.covers,
        "tool_call_ids": page.tool_call_ids,
        "created_at": page.created_at,
        "extra": page.extra,
    }
    if text_once:
        whole[_TEXT_ONCE] = 1
    return orjson.dumps(whole)


def decode_page(body: bytes | str) -> Page:
    """The page a body encodes. A page never changes once stored, and a turn's search reads
    up to a hundred hits, mostly the pages earlier turns read too: the last bodies read
    are kept decoded (looked up by the body itself, so a body is never mistaken for
    another). Those of a message of the usual size, DECODED_PAGES of them, in an LRU whose
    hits cost no Python; larger ones in one bounded by DECODED_BYTES of their bodies, so
    that a few pasted files do not fill memory. Pages are shared, as the page cache shares
    them: never changed in place."""
    if type(body) is bytes or type(body) is str:
        if len(body) <= SMALL_BODY:
            return _decoded_small(body)
        return _DECODED.page(body)
    return _decode(body)


@lru_cache(maxsize=DECODED_PAGES)
def _decoded_small(body: bytes | str) -> Page:
    return _decode(body)


class _DecodedPages:
    """An LRU of decoded pages bounded by count and by the bytes of their bodies; stores'
    reader threads share it, hence the lock."""

    def __init__(self, count: int, size: int) -> None:
        self._pages: OrderedDict[bytes | str, Page] = OrderedDict()
        self._count, self._size, self._held = count, size, 0
        self._lock = threading.Lock()

    def page(self, body: bytes | str) -> Page:
        with self._lock:
            page = self._pages.get(body)
            if page is not None:
                self._pages.move_to_end(body)
                return page
        page = _decode(body)
        if len(body) > self._size // 16:
            return page  # one such page would push out hundreds of the usual kind
        with self._lock:
            if body not in self._pages:
                self._pages[body] = page
                self._held += len(body)
                while len(self._pages) > self._count or self._held > self._size:
                    evicted, _ = self._pages.popitem(last=False)
                    self._held -= len(evicted)
        return page

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()
            self._held = 0
        _decoded_small.cache_clear()


_DECODED = _DecodedPages(LARGE_PAGES, DECODED_BYTES)


def _decode(body: bytes | str) -> Page:
    # Positional, with the enums looked up in dicts: decoding is on the path of every read,
    # and keywords and enum calls were a third of its cost.
    data = orjson.loads(body)
    if _TEXT_ONCE in data:
        _restored_message(data["message"])
    if LEAN in data:
        return lean_view(
            data["page_id"], data["anchor"], data["turn"], data["role"], data["chain_hash"],
            data["message"], data["created_at"], {LEAN: 1, **data["extra"]},
        )
    r0, r1, r2, r3 = data["renderings"]
    if r0 is None:
        r0 = data["message"]["content"]
    t0, t1, t2, t3 = data["tokens"]
    return Page(
        data["page_id"],
        _KINDS[data["kind"]],
        _MODALITIES[data["modality"]],
        data["anchor"],
        data["turn"],
        data["role"],
        (r0, r1, r2, r3),
        (t0, t1, t2, t3),
        data["hint"],
        data["chain_hash"],
        data["message"],
        data["importance"],
        tuple(data["covers"]),
        tuple(data["tool_call_ids"]),
        data["created_at"],
        data["extra"],
    )


def encode_state(state: Mapping[str, Any]) -> bytes:
    return orjson.dumps(state)


def decode_state(raw: bytes | str | None) -> dict[str, Any]:
    if not raw:
        return {}
    state = orjson.loads(raw)
    if not isinstance(state, dict):
        raise ValueError("conversation state must be a JSON object")
    return state


def page_search_tokens(page: Page) -> list[str]:
    """What search matches a page by: who said it and when (questions name people and
    dates), its text (as far as it is analysed) and its hint."""
    said = f"{page.extra.get('speaker') or ''} {page.extra.get('said') or ''}"
    return search_tokens(_DATA_URL.sub(" ", f"{said}\n{analysed(page.text)}\n{page.hint}"))


def id_prefix(page_id: str) -> str:
    """`"msg_12"` -> `"msg"`."""
    return page_id.partition("_")[0]


def is_heavy(pages: Sequence[Page]) -> bool:
    """Whether `pages` hold more than HEAVY_WRITE_CHARS characters."""
    return sum(len(page.text) + part_chars(page) for page in pages) > HEAVY_WRITE_CHARS


def part_chars(page: Page) -> int:
    """The characters of a message's parts besides its text: an inline image's data."""
    content = page.message.get("content") if page.message is not None else None
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        for value in part.values() if isinstance(part, Mapping) else ():
            if isinstance(value, Mapping):  # {"image_url": {"url": "data:..."}}
                value = value.get("url")
            total += len(value) if isinstance(value, str) else 0
    return total
