"""The frame: what a conversation's upstream prompt keeps byte-identical between compactions.

Upstream prompt caches reuse the longest exact prefix of the previous prompt, so the prompt
is laid out as an append-only window:

    [leading message: client system prompt + rules + the leading manifest]
    [every message from `start` to the end, verbatim]
    ... with this turn's block (the pages recalled for the latest message, the best other
    hits) right after the latest user message.

The frame records `start` (the message position where the verbatim window begins) and the
leading manifest; the prefix breaks only at a compaction (the window outgrew its share of
the budget: `start` moves forward to the pinned turns) and at the previous turn's block,
which sits right before the newest messages. The frame lives in the conversation state
under `"frame"`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# 2: no frozen context (version 1 kept one in the leading message).
VERSION = 2


@dataclass(frozen=True, slots=True)
class Frame:
    start: int  # message position where the verbatim window starts
    manifest: Mapping[str, Any]  # the leading manifest, rendered as is
    tokens: int  # what the leading manifest costs (as the packer counts it)
    key: str  # what it was made for (mode, role, encoding, tool names)
    turn: int  # the turn of the compaction that made it

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "start": self.start,
            "manifest": dict(self.manifest),
            "tokens": self.tokens,
            "key": self.key,
            "turn": self.turn,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Frame | None:
        """The stored frame, or None when absent or not readable (the next pack compacts)."""
        if not isinstance(data, Mapping) or data.get("v") != VERSION:
            return None
        try:
            manifest = data["manifest"]
            if not isinstance(manifest, Mapping):
                return None
            return cls(
                start=int(data["start"]),
                manifest=dict(manifest),
                tokens=int(data["tokens"]),
                key=str(data["key"]),
                turn=int(data["turn"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def frame_key(mode: str, role: str, encoding: str, tool_names: Mapping[str, str]) -> str:
    """A frame is reused only for the same mode, developer role, encoding and VM tool names
    (they shape the leading manifest and its token count)."""
    names = ",".join(f"{k}={v}" for k, v in sorted(tool_names.items()))
    return f"{mode}|{role}|{encoding}|{names}"


def block_position(messages: Sequence[Mapping[str, Any]]) -> int:
    """Where this turn's block goes among the window's messages: right after the latest user
    message (so it stays put while a client's tool exchanges of the same turn follow it),
    else at the end. A user message never sits inside a tool exchange, so neither does it."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index + 1
    return len(messages)
