"""The same request again, decided once (issue 15).

A short chat's request whose whole history is stored already, sent again byte for byte, is
a SameTurn (proxy.loop.short_chat): an SDK's retry, a regenerate, an evaluation sampling
one prompt many times, a load generator. Deciding that costs most of what the request
costs over the pass-through: its messages fingerprinted, the threshold worked out, its
tokens counted, the prefix cache searched; and then its answer fingerprinted,
chain-hashed and looked up. Here the decision is kept by the request's bytes, per tenant
(a hit is faster than a miss: one tenant must not learn, by timing, what another sent),
for the most recent bodies:

- the request: its fingerprints, the prefix-cache entry its history was found by, what
  it costs and its answer's name. Taken again only while the prefix cache holds that
  entry (`PrefixCache.holds`); evicted or changed, the request is decided again.
- its answer: the last one placed, and the row of the conversation that ended with it
  after this history. The same answer again is on that conversation while the prefix
  cache still holds that very row (a row seen since, of a turn stored or of the
  conversation made anew under the same id after a deletion, is another object) and the
  store's version is the row's. The version is read for that as before, unless another
  request's read, asked after this request began, found it so.

Why another request's read will do: a version read shows that the conversation ended with
the answer at one moment during the request, no more (it may move on right after, before
the response is out). A read asked after this request began (`SameTurn.started`) was made
at such a moment too. Under load, many requests of the same body are under way at once and
one read serves all those that began before it; a read that finds the conversation moved
on forgets the placed answer.

Equal bytes parse to equal messages, so a hit decides what the whole decision would:
`SameTurn` is made from the request's own parsed body and this.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.loop.prefix_cache import Remembered
from proxy.store.base import Conversation

# Bodies remembered, in all: the most recent of them.
CAPACITY = 128
# A longer body is decided every time: remembering it would hold too much (its answer
# is held too, up to proxy.loop.storing.OFF_LOOP_CHARS).
MAX_BODY_BYTES = 16 << 10


@dataclass(frozen=True, slots=True)
class PlacedAnswer:
    """An answer to the request, and the row the prefix cache held of the conversation
    that ended with it (proxy.loop.prefix_cache: its length and chain hash showed it)."""

    answer: Mapping[str, Any]
    row: Conversation

    @property
    def conv_id(self) -> str:
        return self.row.conv_id

    @property
    def version(self) -> int:
        return self.row.version


@dataclass(slots=True)
class Repeat:
    """What was decided of a request whose whole history is stored (see the module)."""

    fingerprints: list[int]
    remembered: Remembered  # the prefix-cache entry of its whole history
    tokens: int  # what it costs (X-VM-Prompt-Tokens)
    answer_name: str
    placed: PlacedAnswer | None = None  # its last answer placed on a conversation it ends
    # When a read of the store last found `placed` so: (it, the time the read was asked).
    checked: tuple[PlacedAnswer, float] | None = None
    # The latest read of `placed`'s version asked: (it, when it was asked, its answer). A
    # read under way serves the requests begun before it was asked, as a finished one does
    # (on PostgreSQL it is a round trip: 64 clients sending one body each read it at once,
    # and waited 15 ms on average for the pool).
    reading: tuple[PlacedAnswer, float, asyncio.Future[int | None]] | None = None

    def found_since(self, placed: PlacedAnswer, started: float) -> bool:
        """Whether a read asked at `started` or later found `placed` still so."""
        checked = self.checked
        return checked is not None and checked[0] is placed and checked[1] >= started

    def reading_since(
        self, placed: PlacedAnswer, started: float
    ) -> tuple[float, asyncio.Future[int | None]] | None:
        """A read of `placed`'s version asked at `started` or later (under way, or done):
        when it was asked, and its answer."""
        reading = self.reading
        if reading is None or reading[0] is not placed or reading[1] < started:
            return None
        return reading[1], reading[2]

    def share(
        self, placed: PlacedAnswer, asked: float, reading: asyncio.Future[int | None]
    ) -> asyncio.Future[int | None]:
        """`reading`, a read of `placed`'s version asked at `asked`, served to the requests
        begun before it was asked (`reading_since`), unless it fails: then read again."""
        entry = self.reading = (placed, asked, reading)

        def forget_failed(done: asyncio.Future[int | None]) -> None:
            if (done.cancelled() or done.exception() is not None) and self.reading is entry:
                self.reading = None

        reading.add_done_callback(forget_failed)
        return reading

    def version_read(self, placed: PlacedAnswer, asked: float, version: int | None) -> bool:
        """Whether `version`, what a read asked at `asked` found of `placed`'s conversation,
        is still `placed`'s: then `placed` is kept as found then; else it is forgotten
        (`_ending_with` finds another)."""
        if version != placed.version:
            if self.placed is placed:
                self.placed = self.checked = self.reading = None
            return False
        self.placed = placed
        checked = self.checked
        if checked is None or checked[0] is not placed or checked[1] < asked:
            self.checked = (placed, asked)
        return True


class Repeats:
    def __init__(self, capacity: int = CAPACITY, max_body: int = MAX_BODY_BYTES) -> None:
        self._capacity = capacity
        self._max_body = max_body
        self._repeats: OrderedDict[tuple[str, bytes], Repeat] = OrderedDict()

    def __len__(self) -> int:
        return len(self._repeats)

    def get(self, tenant: str, raw: bytes) -> Repeat | None:
        """What was decided of the request `raw` of `tenant`, if it is remembered."""
        if len(raw) > self._max_body:
            return None
        key = (tenant, raw)
        found = self._repeats.get(key)
        if found is not None:
            self._repeats.move_to_end(key)
        return found

    def keep(self, tenant: str, raw: bytes, repeat: Repeat) -> None:
        if len(raw) > self._max_body:
            return
        key = (tenant, raw)
        self._repeats[key] = repeat
        self._repeats.move_to_end(key)
        while len(self._repeats) > self._capacity:
            self._repeats.popitem(last=False)
