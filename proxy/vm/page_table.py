"""The page table: per-conversation access statistics, and the L1 set of hot pages.

Only pages that were mapped or faulted are tracked, and only the `capacity` most recently
touched ones are kept, so the table stays a few kilobytes in the conversation state however
long the conversation grows. A page that fell out of the table is simply cold again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CAPACITY = 256
L1_SIZE = 16
# Access history decays with this many turns of half-life.
HALF_LIFE_TURNS = 6.0
# Entries untouched this many turns are too cold to be hot, whatever their history.
HOT_WINDOW_TURNS = 24


@dataclass(slots=True)
class Entry:
    mapped: int = 0
    faulted: int = 0
    last_faulted: int = -1
    last_mapped: int = -1
    level: int = 2

    def to_list(self) -> list[int]:
        return [self.mapped, self.faulted, self.last_faulted, self.last_mapped, self.level]

    @classmethod
    def from_list(cls, raw: Iterable[Any]) -> Entry:
        if type(raw) is list and len(raw) == 5:
            # As to_list wrote it (read back for up to CAPACITY entries every turn).
            a, b, c, d, e = raw
            if type(a) is int and type(b) is int and type(c) is int and type(d) is int:
                if type(e) is int:
                    return cls(a, b, c, d, e)
        values = [int(v) for v in raw][:5]
        return cls(*values)

    @property
    def last_touched(self) -> int:
        return max(self.last_faulted, self.last_mapped)


class PageTable:
    """Access stats per page id; `l1` lists recently faulted or hot ids, newest last."""

    def __init__(self, *, capacity: int = CAPACITY, l1_size: int = L1_SIZE) -> None:
        self.capacity = capacity
        self.l1_size = l1_size
        self.entries: dict[str, Entry] = {}
        self.l1: list[str] = []

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, page_id: str) -> Entry | None:
        return self.entries.get(page_id)

    def note_mapped(self, levels: Mapping[str, int], turn: int) -> None:
        """Record that these pages went upstream at `turn` at these levels."""
        entries = self.entries
        for page_id, level in levels.items():
            entry = entries.get(page_id)
            if entry is None:  # (not setdefault: it would make an Entry for every page)
                entry = entries[page_id] = Entry()
            if entry.last_mapped != turn:
                entry.mapped += 1
            entry.last_mapped = turn
            entry.level = level
        self._trim()

    def note_faulted(self, page_id: str, level: int, turn: int) -> None:
        entry = self.entries.setdefault(page_id, Entry())
        entry.faulted += 1
        entry.last_faulted = turn
        entry.level = min(entry.level, level)
        if page_id in self.l1:
            self.l1.remove(page_id)
        self.l1.append(page_id)
        del self.l1[: -self.l1_size]
        self._trim()

    def faulted_recently(self, page_id: str, turn: int) -> bool:
        """Faulted this turn or the one before: anti-thrash says keep it mapped."""
        entry = self.entries.get(page_id)
        return entry is not None and entry.last_faulted >= turn - 1

    def preferred_level(self, page_id: str, default: int) -> int:
        """The level a page was last wanted at: faulted pages keep the level asked for."""
        entry = self.entries.get(page_id)
        if entry is None or entry.faulted == 0:
            return default
        return min(entry.level, default)

    def heat(self, page_id: str, turn: int) -> float:
        """0..1: how much the model has been using this page lately (faults weigh most)."""
        entry = self.entries.get(page_id)
        if entry is None:
            return 0.0
        fault = entry.faulted * _decay(turn - entry.last_faulted) if entry.faulted else 0.0
        mapped = 0.2 * entry.mapped * _decay(turn - entry.last_mapped) if entry.mapped else 0.0
        return min(1.0, 0.5 * fault + 0.1 * mapped)

    def hot_ids(self, turn: int, limit: int = L1_SIZE) -> list[str]:
        """L1 first (newest first), then other pages faulted lately, hottest first."""
        found = list(reversed(self.l1))[:limit]
        if len(found) < limit:
            recent = turn - HOT_WINDOW_TURNS
            l1 = set(self.l1)
            heats = [
                (self.heat(pid, turn), pid)
                for pid, entry in self.entries.items()
                if entry.faulted and entry.last_faulted >= recent and pid not in l1
            ]
            heats.sort(key=lambda hp: (-hp[0], hp[1]))
            found.extend(pid for heat, pid in heats[: limit - len(found)] if heat > 0.05)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {"v": 1, "e": {k: e.to_list() for k, e in self.entries.items()}, "l1": self.l1}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, **kwargs: int) -> PageTable:
        table = cls(**kwargs)
        if data:
            entries = table.entries
            for page_id, raw in dict(data.get("e", {})).items():
                # Up to CAPACITY entries every turn: to_dict's own lists taken apart here,
                # without a call each; anything else through from_list.
                if type(raw) is list and len(raw) == 5:
                    a, b, c, d, e = raw
                    if type(a) is int and type(b) is int and type(c) is int and type(d) is int:
                        if type(e) is int:
                            entries[str(page_id)] = Entry(a, b, c, d, e)
                            continue
                entries[str(page_id)] = Entry.from_list(raw)
            table.l1 = [str(p) for p in data.get("l1", [])][-table.l1_size :]
            table._trim()
        return table

    def _trim(self) -> None:
        if len(self.entries) <= self.capacity:
            return
        keep = sorted(
            (max(e.last_faulted, e.last_mapped), page_id) for page_id, e in self.entries.items()
        )
        for _, page_id in keep[: len(self.entries) - self.capacity]:
            del self.entries[page_id]
            if page_id in self.l1:
                self.l1.remove(page_id)


def _decay(age: int) -> float:
    return math.exp(-math.log(2) * max(age, 0) / HALF_LIFE_TURNS)
