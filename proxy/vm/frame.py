"""The frame: what a conversation's upstream prompt keeps byte-identical between compactions.

Upstream prompt caches reuse the longest exact prefix of the previous prompt, so the prompt
is laid out as an append-only window:

    [developer: client system prompt + rules + frozen <VM:CONTEXT> + frozen manifest]
    [every message from `start` to the end, verbatim]
    ... with this turn's block (query-relevant pages, a manifest delta) as a developer
    message right after the latest user message.

The frame records `start` (the message position where the verbatim window begins) and the
frozen context (page ids and levels, in render order) with its frozen manifest. Pages never
change, so the same ids and levels render the same bytes turn after turn; the prefix breaks
only at a compaction (the window no longer fits: `start` moves forward to the pinned turns
and the frozen context is chosen again) and at the previous turn's block, which sits right
before the newest messages. The frame lives in the conversation state under `"frame"`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

VERSION = 1


@dataclass(frozen=True, slots=True)
class Frame:
    start: int  # message position where the verbatim window starts
    context: tuple[tuple[str, int], ...]  # frozen (page id, level), in render order
    manifest: Mapping[str, Any]  # the frozen manifest, rendered as is
    tokens: int  # what the frozen context and manifest cost (as the packer counts them)
    key: str  # what the frozen part was made for (mode, role, encoding, tool names)
    turn: int  # the turn of the compaction that made it

    def page_ids(self) -> list[str]:
        return [page_id for page_id, _ in self.context]

    def levels(self) -> dict[str, int]:
        return dict(self.context)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "start": self.start,
            "context": [[page_id, level] for page_id, level in self.context],
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
            context = tuple((str(pid), int(level)) for pid, level in data["context"])
            manifest = data["manifest"]
            if not isinstance(manifest, Mapping) or any(not 0 <= lv <= 3 for _, lv in context):
                return None
            return cls(
                start=int(data["start"]),
                context=context,
                manifest=dict(manifest),
                tokens=int(data["tokens"]),
                key=str(data["key"]),
                turn=int(data["turn"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def frame_key(mode: str, role: str, encoding: str, tool_names: Mapping[str, str]) -> str:
    """A frame is reused only for the same mode, developer role, encoding and VM tool names
    (they shape the frozen manifest and its token counts)."""
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
