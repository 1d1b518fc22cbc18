"""`memory://`: page vectors in dicts beside the MemoryStore's pages (lost on exit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

VectorRow = tuple[str, int, bytes]


class _Lengths(Protocol):
    def conversation_length(self, tenant: str, conv_id: str) -> int | None: ...


class MemoryVectors:
    def __init__(self, store: _Lengths) -> None:
        self._store = store
        self._rows: dict[tuple[str, str, str], list[VectorRow]] = {}
        self._marks: dict[tuple[str, str, str], int] = {}

    async def marks(self, tenant: str, conv_ids: Sequence[str], space: str) -> dict[str, int]:
        return {c: self._marks[(tenant, c, space)] for c in conv_ids
                if (tenant, c, space) in self._marks}  # fmt: skip

    async def load(
        self, tenant: str, conv_id: str, space: str, from_anchor: int
    ) -> list[VectorRow]:
        rows = self._rows.get((tenant, conv_id, space), [])
        return [row for row in rows if row[1] >= from_anchor]

    async def save(
        self, tenant: str, conv_id: str, space: str, rows: Sequence[VectorRow], done_below: int
    ) -> None:
        key = (tenant, conv_id, space)
        kept = [r for r in self._rows.get(key, []) if r[1] < self._marks.get(key, 0)]
        self._rows[key] = sorted([*kept, *rows], key=lambda r: (r[1], r[0]))
        self._marks[key] = done_below

    async def pending(self, space: str, limit: int) -> list[tuple[str, str]]:
        found = []
        for (tenant, conv_id, mark_space), mark in self._marks.items():
            length = self._store.conversation_length(tenant, conv_id)
            if mark_space == space and length is not None and length > mark:
                found.append((tenant, conv_id))
        return found[:limit]

    def forget(self, tenant: str, conv_id: str) -> None:
        """The conversation was deleted: its vectors go with it."""
        for key in [k for k in self._marks if k[:2] == (tenant, conv_id)]:
            del self._marks[key]
            self._rows.pop(key, None)
