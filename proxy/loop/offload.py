"""Work that is too big for the event loop when its input is huge: run in a worker thread.

One request with a 30 MB message must not hold up every other request while its text is
hashed or analysed (issue 13). Small inputs stay on the loop, where a thread hop would
cost more than the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.loop.prefix_cache import fingerprint_all, short_fingerprints
from proxy.vm.identity import chain_hashes

# Above this many characters chain hashing goes to a thread (blake2b lets go of the GIL
# for large inputs, so there it runs beside the loop); a megabyte hashes in ~2 ms.
HASH_OFF_LOOP_CHARS = 1 << 20


def text_chars(message: Mapping[str, Any]) -> int:
    """Characters of text a message brings: its content (parts included, inline image
    data too) and the arguments of its tool calls."""
    content = message.get("content")
    total = len(content) if isinstance(content, str) else 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                for value in part.values():
                    if isinstance(value, Mapping):  # {"image_url": {"url": "data:..."}}
                        value = value.get("url")
                    total += len(value) if isinstance(value, str) else 0
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping) and isinstance(function.get("arguments"), str):
            total += len(function["arguments"])
    return total


async def hashed(
    tenant: str, messages: Sequence[Mapping[str, Any]], *, prev: str | None = None
) -> list[str]:
    """proxy.vm.identity.chain_hashes, in a worker thread when the messages are huge."""
    if sum(map(text_chars, messages)) > HASH_OFF_LOOP_CHARS:
        return await asyncio.to_thread(chain_hashes, tenant, messages, prev=prev)
    return chain_hashes(tenant, messages, prev=prev)


async def fingerprinted(messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """proxy.loop.prefix_cache.fingerprint_all, in a worker thread when a text is long
    (LONG_TEXT_CHARS: it is then digested in slices, letting go of the GIL between them)."""
    found = short_fingerprints(messages)
    if found is None:
        return await asyncio.to_thread(fingerprint_all, messages)
    return found
