"""Mutation records: the append-only log of page events that answers "what was in context at
turn T". Per turn: `create` for each page made, one `turn` record of the prompt sent
(proxy.vm.turn_record: what was pinned and mapped at which level, enough to rebuild the
prompt), `fault` and `search` for each memory call the model made, `cite` for each citation
stripped, and `static` for the request's static part (its fields and rules, logged once
while they stay the same; `page_id` holds its hash). Logs written before turn records
kept a `map`, `compress`, `pin` or `evict` event per page instead; `in_context_at` reads
both. The store keeps them as they are made here."""

from __future__ import annotations

from collections.abc import Callable

from proxy.vm.records import immutable
from proxy.vm.turn_record import RecordError, TurnRecord

# Seconds since the epoch (time.time): what stamps mutations, pages and the store's rows.
# Injected wherever time is read, so tests are byte-stable.
Clock = Callable[[], float]


CREATE = "create"
MAP = "map"
FAULT = "fault"
EVICT = "evict"
COMPRESS = "compress"
PIN = "pin"
TURN = "turn"
SEARCH = "search"
STATIC = "static"
CITE = "cite"


@immutable
class Mutation:
    """One event of one turn (see the module docstring); `detail` holds a record's JSON."""

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
    (pinned pages went verbatim, level 0; faulted pages joined at their level; a turn of
    several requests, a client's tool calls between them, has a record each)."""
    found: dict[str, int | None] = {}
    for record in mutations:
        if record.turn != turn:
            continue
        if record.event == TURN:
            try:
                found.update(TurnRecord.from_detail(record.turn, record.detail).in_view())
            except RecordError:
                continue
        elif record.event in (MAP, FAULT, COMPRESS):
            found[record.page_id] = record.level
        elif record.event == PIN:
            found[record.page_id] = 0
        elif record.event == EVICT:
            found.pop(record.page_id, None)
    return found


def turn_mutation(record: TurnRecord, at: float) -> Mutation:
    """The log event of a turn record."""
    return Mutation(turn=record.turn, event=TURN, page_id="", detail=record.to_detail(), at=at)
