"""Mutation records: the append-only log of page events that answers "what was in context at
turn T" (create, map, fault, evict, compress, pin). The store keeps them as they are made
here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Seconds since the epoch (time.time): what stamps mutations, pages and the store's rows.
# Injected wherever time is read, so tests are byte-stable.
Clock = Callable[[], float]


CREATE = "create"
MAP = "map"
FAULT = "fault"
EVICT = "evict"
COMPRESS = "compress"
PIN = "pin"


@dataclass(frozen=True, slots=True)
class Mutation:
    """One page event of one turn: create, map, fault, evict, compress, pin, unpin."""

    turn: int
    event: str
    page_id: str
    level: int | None = None
    detail: str = ""
    at: float = 0.0


def mutation(
    turn: int, event: str, page_id: str, *, level: int | None = None, detail: str = "", at: float
) -> Mutation:
    return Mutation(turn=turn, event=event, page_id=page_id, level=level, detail=detail, at=at)


def in_context_at(mutations: list[Mutation], turn: int) -> dict[str, int | None]:
    """Page id -> level of what was sent upstream at `turn`, from that turn's records
    (pinned pages went verbatim, level 0; faulted pages joined at their level)."""
    found: dict[str, int | None] = {}
    for record in mutations:
        if record.turn != turn:
            continue
        if record.event in (MAP, FAULT, COMPRESS):
            found[record.page_id] = record.level
        elif record.event == PIN:
            found[record.page_id] = 0
        elif record.event == EVICT:
            found.pop(record.page_id, None)
    return found
