"""Skip re-hashing a resent history: fingerprint of a message prefix -> its chain hash.

A chat client resends its whole history every turn, and chain-hashing thousands of
messages costs milliseconds of Python per request. The fingerprint here is Python's own
`hash` over each message's canonical fields (C speed, process-local, keyed per process
for strings), combined per prefix; it maps to the chain hash this process already
computed for that exact prefix. Only the messages after the longest remembered prefix are
chain-hashed. A text longer than LONG_TEXT_CHARS stands in the fingerprint as a digest of
its UTF-8, fed in slices: `hash` of a 50 MB string is one C call holding the GIL for
~100 ms, every other request waiting (issue 13); such histories are fingerprinted in a
worker thread (proxy.loop.offload.fingerprinted).

A hit is a hint, not proof of storage. Each entry names the conversation that held the
prefix's last message, and the cache keeps the last row (and path) this process saw of
each recent conversation: when that row still ends with the prefix, the caller may go
straight to an append naming the row's version, which proves or refutes it; otherwise
it looks the chain hash up in the store.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from proxy.store.base import Conversation, Path
from proxy.vm.bounds import encoded_slices
from proxy.vm.records import immutable

# How many of the newest prefix lengths are tried: a turn adds one or two messages.
_PROBES = 4
_ROLE = operator.itemgetter("role")
_CONTENT = operator.itemgetter("content")
_CONTENT_OR_NONE = operator.methodcaller("get", "content")
# The fields besides role and content that a message's fingerprint takes.
_KEYED = frozenset(("name", "tool_call_id", "tool_calls"))
# Longer texts are fingerprinted by a digest (see above).
LONG_TEXT_CHARS = 1 << 20


class Fingerprinted(list[dict[str, Any]]):
    """Chat messages with their fingerprints, made by the pass that made the messages (a
    Responses request's input, proxy.loop.responses_input, which had each message's role
    and text at hand): `fingerprint_all` takes them as they are instead of going over the
    history again. Made once, then only read: a message changed in place would keep its
    old fingerprint."""

    __slots__ = ("fingerprints",)

    def __init__(self, messages: Sequence[dict[str, Any]], fingerprints: list[int]) -> None:
        super().__init__(messages)
        self.fingerprints = fingerprints


@immutable
class Remembered:
    """A remembered prefix: its length, the chain hash of its last message, and the
    conversation that held that message when it was remembered."""

    count: int
    chain_hash: str
    conv_id: str


def fingerprint(message: Mapping[str, Any]) -> int:
    """Equal for messages that chain-hash equally (content None and "" alike)."""
    content = message.get("content")
    if (
        type(content) is str
        and "tool_calls" not in message
        and "tool_call_id" not in message
        and "name" not in message
    ):
        # The common case, kept lean: this runs for every message of every resent history.
        key = content if len(content) <= LONG_TEXT_CHARS else _text_key(content)
        return hash((message.get("role"), key, None, None, None))
    if content is None:
        content = ""
    elif isinstance(content, str):
        content = _text_key(content)
    else:
        content = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    calls = message.get("tool_calls")
    name = message.get("name")
    call_id = message.get("tool_call_id")
    # As the chain hash reads them (proxy.vm.identity): a name or call id that is not a
    # string (a list, which validation lets through on a message that takes none) is its
    # text, not something `hash` refuses.
    return hash(
        (
            message.get("role"),
            content,
            str(name) if name else None,
            None if call_id is None else str(call_id),
            orjson.dumps(calls, option=orjson.OPT_SORT_KEYS) if calls else None,
        )
    )


def fingerprint_all(messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """`fingerprint` of each message. A history of only role and text messages (most
    resent histories) is done in C iterators, without a bytecode loop per message; any
    other message is fingerprinted on its own."""
    found = _fingerprints(messages, long_ok=True)
    assert found is not None
    return found


def short_fingerprints(messages: Sequence[Mapping[str, Any]]) -> list[int] | None:
    """`fingerprint_all(messages)`, or None when a text is long (LONG_TEXT_CHARS): its
    digest is for a worker thread (proxy.loop.offload.fingerprinted)."""
    return _fingerprints(messages, long_ok=False)


def _fingerprints(messages: Sequence[Mapping[str, Any]], long_ok: bool) -> list[int] | None:
    if type(messages) is Fingerprinted and len(messages.fingerprints) == len(messages):
        return messages.fingerprints  # (made only when no text was long)
    # Plain: no message has a field the fingerprint takes besides role and text. Fields
    # it does not take (an answer sent back with its `"refusal": null`) keep it plain.
    if set(map(len, messages)) == {2} or _KEYED.isdisjoint(set().union(*messages)):
        try:
            roles = list(map(_ROLE, messages))
            contents = list(map(_CONTENT, messages))
        except KeyError:  # two fields, but not these two
            pass
        else:
            if set(map(type, contents)) == {str}:
                if max(map(len, contents), default=0) > LONG_TEXT_CHARS:
                    if not long_ok:
                        return None
                    contents = list(map(_text_key, contents))
                nothing = itertools.repeat(None)
                rows = zip(roles, contents, nothing, nothing, nothing, strict=False)
                return list(map(hash, rows))
    if not long_ok and longest_text(messages) > LONG_TEXT_CHARS:
        return None
    return [
        hash((m["role"], content, None, None, None))
        if len(m) == 2 and type(content := m.get("content")) is str and "role" in m
        and len(content) <= LONG_TEXT_CHARS
        else fingerprint(m)
        for m in messages
    ]


def longest_text(messages: Sequence[Mapping[str, Any]]) -> int:
    """The length of the longest content among `messages` (of a list of parts, their
    number), in C iterators."""
    try:
        return max(map(len, filter(None, map(_CONTENT_OR_NONE, messages))), default=0)
    except TypeError:  # a content with no length: nothing is long
        return 0


def _text_key(text: str) -> str | bytes:
    """What stands for `text` in a fingerprint: itself, or the digest of a long text."""
    if len(text) <= LONG_TEXT_CHARS:
        return text
    digest = hashlib.blake2b(digest_size=16, person=b"vm-long-text")
    for piece in encoded_slices(text, "surrogatepass"):
        digest.update(piece)
    return digest.digest()


class PrefixCache:
    def __init__(self, capacity: int = 8192, rows: int = 256) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, int, int], tuple[str, str]] = OrderedDict()
        self._rows_capacity = rows
        self._rows: OrderedDict[tuple[str, str], tuple[Conversation, Path]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, tenant: str, fingerprints: Sequence[int]) -> Remembered | None:
        """The longest remembered prefix among the newest few lengths, or None."""
        n = len(fingerprints)
        for k in range(n, max(0, n - _PROBES), -1):
            key = (tenant, k, hash(tuple(fingerprints[:k])))
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return Remembered(k, *found)
        return None

    def holds(self, tenant: str, fingerprints: Sequence[int], remembered: Remembered) -> bool:
        """Whether `remembered`, found by `longest(tenant, fingerprints)` before, is still
        what the cache holds of that prefix (kept as fresh as `longest` keeps it)."""
        count = remembered.count
        key = (tenant, count, hash(tuple(fingerprints[:count])))
        if self._entries.get(key) != (remembered.chain_hash, remembered.conv_id):
            return False
        self._entries.move_to_end(key)
        return True

    def remember(
        self,
        tenant: str,
        fingerprints: Sequence[int],
        chain_hash: str,
        conv: Conversation,
        path: Path,
    ) -> None:
        """`fingerprints` end with the message of `chain_hash`, last on `conv` (the row as
        the store returned it, with its whole path)."""
        if not fingerprints:
            return
        key = (tenant, len(fingerprints), hash(tuple(fingerprints)))
        self._entries[key] = (chain_hash, conv.conv_id)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        self.saw(conv, path)

    def saw(self, conv: Conversation, path: Path) -> None:
        """Keep `conv` as the latest row seen of its conversation."""
        key = (conv.tenant, conv.conv_id)
        self._rows[key] = (conv, path)
        self._rows.move_to_end(key)
        while len(self._rows) > self._rows_capacity:
            self._rows.popitem(last=False)

    def row(self, tenant: str, conv_id: str) -> tuple[Conversation, Path] | None:
        """The latest row seen of the conversation, and its path: possibly stale."""
        return self._rows.get((tenant, conv_id))

    def row_ending(
        self, tenant: str, remembered: Remembered
    ) -> tuple[Conversation, Path] | None:
        """The latest row seen of the conversation that held `remembered`, and its whole
        path, when that row still ends with it (a hint still: the store may have moved on
        since); else None."""
        seen = self._rows.get((tenant, remembered.conv_id))
        if seen is None:
            return None
        row, path = seen
        if (
            row.length != remembered.count
            or row.state.get("hash") != remembered.chain_hash
            or path.leaf != row.conv_id
        ):
            return None
        return seen
