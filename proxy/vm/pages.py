"""The page: one unit of conversation content, and the ids a model sees for it.

A page never changes once created (a new fact is a new page), so stores may cache pages
freely. The four renderings are real representations, made once at ingest:
level 0 verbatim, 1 an extractive reduction, 2 an abstract, 3 the id plus a hint.
"""

from __future__ import annotations

import re
from dataclasses import field
from enum import StrEnum
from typing import Any

from proxy.vm.records import immutable


class PageKind(StrEnum):
    CLAIM = "claim"
    INDEX = "index"
    PROCEDURE = "procedure"
    SUMMARY = "summary"
    ARTIFACT = "artifact"
    TRANSCRIPT = "transcript"


# Lower is kept longer when the working set must shed pages (DESIGN.md section 1).
EVICTION_WEIGHT: dict[PageKind, float] = {
    PageKind.CLAIM: 0.5,
    PageKind.INDEX: 0.7,
    PageKind.PROCEDURE: 0.9,
    PageKind.SUMMARY: 1.0,
    PageKind.ARTIFACT: 1.2,
    PageKind.TRANSCRIPT: 1.4,
}


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    STRUCTURED = "structured"


# Prefix of the short id a model sees, by what the page is.
ID_PREFIXES = ("msg", "seg", "claim", "img")
_PAGE_ID = re.compile(r"^(msg|seg|claim|img)_(\d+)$")


def make_page_id(prefix: str, number: int) -> str:
    return f"{prefix}_{number}"


def parse_page_id(page_id: str) -> tuple[str, int] | None:
    """`"msg_42"` -> `("msg", 42)`; None for anything that is not a well-formed id."""
    match = _PAGE_ID.match(page_id.strip())
    if match is None:
        return None
    return match.group(1), int(match.group(2))


@immutable
class Page:
    """One page of one conversation path.

    `anchor` places the page on the path: a message page's own position (0-based index
    in the conversation's messages), or for a derived page (segment summary, claim,
    image) the position of the last message it was derived from. A page is visible on
    a path exactly when the message at `anchor` is on that path.
    """

    page_id: str
    kind: PageKind
    modality: Modality
    anchor: int
    turn: int
    role: str
    renderings: tuple[str, str, str, str]
    tokens: tuple[int, int, int, int]
    hint: str
    chain_hash: str = ""
    message: dict[str, Any] | None = None
    importance: float = 0.5
    covers: tuple[str, ...] = ()
    tool_call_ids: tuple[str, ...] = ()
    created_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The full text of the page, what search indexes and level 0 shows."""
        return self.renderings[0]

    @property
    def is_message(self) -> bool:
        return self.message is not None

    def rendering(self, level: int) -> str:
        return self.renderings[level]
