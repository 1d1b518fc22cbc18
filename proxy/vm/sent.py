"""Digests of what a turn sent upstream: the check a turn replay is held to.

The upstream client sends `orjson.dumps(body)`. Its bytes are the concatenation of the
body's keys and values, each serialized alone, so one pass over the parts gives
- `digest`: the SHA-256 of exactly those bytes (a replay that serializes to the same digest
  sent the same bytes);
- `parts`: a CRC-32 per element of the message list (`messages`, or a Responses request's
  `input`), to name the message where a replay differs, and to see how much of a prompt
  is the previous turn's (`prefix_share`);
- the request's static part: every other field as sent (model, tool schemas, sampling
  settings, ...; the message list's place kept as null), the leading message's rules
  (`prefix`) and the client API the prompt was made for (`dialect`), with a hash, so it is
  logged once while it stays the same.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

CRC_CHARS = 8


@dataclass(frozen=True, slots=True)
class SentBody:
    key: str  # the body's message list: "messages" or "input"
    digest: str
    parts: list[int]
    lengths: list[int]  # bytes of each element of the message list
    static: dict[str, Any]
    static_hash: str

    @property
    def parts_hex(self) -> str:
        return "".join(f"{crc:08x}" for crc in self.parts)


def digest_body(
    body: Mapping[str, Any], key: str, prefix: str, dialect: str = "chat"
) -> SentBody:
    """`dialect`: the client API the prompt was made for ("chat", "responses"), which
    says how its messages became the body's list."""
    whole = hashlib.sha256(b"{")
    static = hashlib.sha256()
    parts: list[int] = []
    lengths: list[int] = []
    fields: dict[str, Any] = {}
    for index, (name, value) in enumerate(body.items()):
        head = orjson.dumps(name) + b":"
        whole.update(head if index == 0 else b"," + head)
        if name == key and isinstance(value, list):
            whole.update(b"[")
            for position, element in enumerate(value):
                raw = orjson.dumps(element)
                whole.update(raw if position == 0 else b"," + raw)
                parts.append(zlib.crc32(raw))
                lengths.append(len(raw))
            whole.update(b"]")
            static.update(head + b"null,")
            fields[name] = None
        else:
            raw = orjson.dumps(value)
            whole.update(raw)
            static.update(head + raw + b",")
            fields[name] = value
    whole.update(b"}")
    static.update(b"|" + orjson.dumps([key, dialect, prefix]))
    return SentBody(
        key=key,
        digest=whole.hexdigest(),
        parts=parts,
        lengths=lengths,
        static={"key": key, "dialect": dialect, "fields": fields, "prefix": prefix},
        static_hash=static.hexdigest()[:32],
    )


def parse_parts(text: str) -> list[int]:
    """`SentBody.parts_hex` read back ([] for anything malformed)."""
    if len(text) % CRC_CHARS:
        return []
    try:
        return [int(text[i : i + CRC_CHARS], 16) for i in range(0, len(text), CRC_CHARS)]
    except ValueError:
        return []


def prefix_share(parts: Sequence[int], lengths: Sequence[int], previous: Sequence[int]) -> float:
    """The share of this message list's bytes that repeats the previous one's leading
    messages (whole messages, in order): what an upstream prompt cache can reuse."""
    total = sum(lengths)
    if not total:
        return 0.0
    same = 0
    for crc, length, before in zip(parts, lengths, previous, strict=False):
        if crc != before:
            break
        same += length
    return same / total


def differing(parts: Sequence[int], expected: Sequence[int]) -> list[int]:
    """Positions of the message list whose CRC differs (extra or missing ones included)."""
    count = max(len(parts), len(expected))
    return [
        i for i in range(count)
        if i >= len(parts) or i >= len(expected) or parts[i] != expected[i]
    ]
