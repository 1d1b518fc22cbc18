"""Skip re-hashing a resent history: fingerprint of a message prefix -> its chain hash.

A chat client resends its whole history every turn, and chain-hashing thousands of
messages costs milliseconds of Python per request. The fingerprint here is Python's own
`hash` over each message's canonical fields (C speed, process-local, keyed per process
for strings), combined per prefix; it maps to the chain hash this process already
computed for that exact prefix. Only the messages after the longest remembered prefix are
chain-hashed. A hit is a hint, not proof of storage: the caller still looks the chain hash
up in the store before trusting it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

# How many of the newest prefix lengths are tried: a turn adds one or two messages.
_PROBES = 4


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
        return hash((message.get("role"), content, None, None, None))
    if content is None:
        content = ""
    elif not isinstance(content, str):
        content = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    calls = message.get("tool_calls")
    return hash(
        (
            message.get("role"),
            content,
            message.get("name") or None,
            message.get("tool_call_id"),
            orjson.dumps(calls, option=orjson.OPT_SORT_KEYS) if calls else None,
        )
    )


class PrefixCache:
    def __init__(self, capacity: int = 8192) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, int, int], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, tenant: str, fingerprints: Sequence[int]) -> tuple[int, str] | None:
        """(k, chain hash of message k-1) for the longest remembered prefix among the
        newest few lengths, or None."""
        n = len(fingerprints)
        for k in range(n, max(0, n - _PROBES), -1):
            key = (tenant, k, hash(tuple(fingerprints[:k])))
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return k, found
        return None

    def remember(self, tenant: str, fingerprints: Sequence[int], chain_hash: str) -> None:
        if not fingerprints:
            return
        key = (tenant, len(fingerprints), hash(tuple(fingerprints)))
        self._entries[key] = chain_hash
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
