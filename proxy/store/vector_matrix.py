"""One conversation's vectors in one space, as the vector index holds them in process, and
the exact scoring of a path's rows (proxy.store.vectors).

The rows sit in anchor order in one float32 buffer, a page's passages side by side, so a
span of the path is a contiguous run of rows (found by bisecting the anchors) scored by
one matrix-vector product on a view. A page scores its best passage: the best rows are
taken (as many per page wanted as the part has rows per page, doubled while passages of
one page crowd out the others) and the first row of each page among them kept, by each
row's page number held beside the rows: cheaper than a maximum per page over every row.
A top-up writes past the used rows, in place while the buffer has room (it grows by a
quarter when full), so a scan running on another thread over the rows it was given never
sees them change. Python touches only the pages returned, never each row.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from proxy.vm.passages import page_of

# (row id: the page id, or `page_id#n` for its n-th passage; anchor; float32 vector bytes)
VectorRow = tuple[str, int, bytes]
# Bytes held per page id beside its rows, counted against the cache's size.
ID_BYTES = 64


def _empty_rows() -> npt.NDArray[np.float32]:
    return np.zeros((0, 0), dtype=np.float32)


def _no_ints() -> npt.NDArray[np.int64]:
    return np.zeros(0, dtype=np.int64)


@dataclass(slots=True)
class Matrix:
    """The cached vectors of one conversation below its mark `done_below`: `count` rows of
    `buffer` in anchor order, each row's anchor, and the first row of each page."""

    done_below: int = 0
    count: int = 0
    buffer: npt.NDArray[np.float32] = field(default_factory=_empty_rows)
    anchors: npt.NDArray[np.int64] = field(default_factory=_no_ints)
    pages: npt.NDArray[np.int64] = field(default_factory=_no_ints)
    page_ids: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.buffer.shape[1])

    @property
    def nbytes(self) -> int:
        held = self.buffer.nbytes + self.anchors.nbytes + self.pages.nbytes
        return int(held) + ID_BYTES * len(self.page_ids)

    def extend(self, found: Sequence[VectorRow], done_below: int) -> None:
        """Take in the rows of `found` at anchors from the current mark up to `done_below`
        (others are already held, or past the mark read), and move the mark there."""
        fresh = sorted((row for row in found if self.done_below <= row[1] < done_below),
                       key=lambda row: (row[1], page_of(row[0])))  # fmt: skip
        self.done_below = max(self.done_below, done_below)
        if not fresh:
            return
        size = len(fresh[0][2])
        if any(len(blob) != size for _, _, blob in fresh) or (
            self.count and size != 4 * self.dim
        ):
            raise ValueError("vectors of one space differ in dimension")
        added = np.frombuffer(b"".join(blob for _, _, blob in fresh), dtype=np.float32)
        need = self.count + len(fresh)
        if need > len(self.buffer) or not self.count:
            grown = np.empty((max(need, self.count + self.count // 4), size // 4), np.float32)
            if self.count:
                grown[: self.count] = self.buffer[: self.count]
            self.buffer = grown
        self.buffer[self.count : need] = added.reshape(len(fresh), -1)
        ids = [page_of(row_id) for row_id, _, _ in fresh]
        firsts = [n for n in range(len(fresh)) if n == 0 or ids[n] != ids[n - 1]
                  or fresh[n][1] != fresh[n - 1][1]]  # fmt: skip
        numbers = np.zeros(len(fresh), np.int64)
        numbers[firsts[1:]] = 1
        self.anchors = np.concatenate([self.anchors, [anchor for _, anchor, _ in fresh]])
        self.pages = np.concatenate([self.pages, np.cumsum(numbers) + len(self.page_ids)])
        self.page_ids += [ids[n] for n in firsts]
        self.count = need

    def part(self, lo: int, hi: int | None) -> Part | None:
        """The rows at anchors `lo <= anchor < hi` (`hi` None: no end), None when none."""
        first = int(np.searchsorted(self.anchors, lo))
        end = self.count if hi is None else int(np.searchsorted(self.anchors, hi))
        if end <= first:
            return None
        return Part(self.buffer[first:end], self.pages[first:end], self.page_ids)


@dataclass(frozen=True, slots=True)
class Part:
    """Rows of one matrix to score, with the number of each row's page in `page_ids`."""

    rows: npt.NDArray[np.float32]
    pages: npt.NDArray[np.int64]
    page_ids: list[str]


@dataclass(frozen=True, slots=True)
class Scan:
    """The parts of a path to score together."""

    parts: list[Part]

    @property
    def rows(self) -> int:
        return sum(len(part.rows) for part in self.parts)

    def best(self, query: npt.NDArray[np.float32], limit: int) -> list[tuple[str, float]]:
        """The `limit` best pages, best first (ties in path order): a page scores its best
        row, and a page id met in two parts counts once."""
        if not self.parts:
            return []
        # Each row's score and its page, numbered across the parts.
        offsets = np.cumsum([0] + [len(part.page_ids) for part in self.parts]).tolist()
        if len(self.parts) == 1:
            scores, pages = self.parts[0].rows @ query, self.parts[0].pages
        else:
            scores = np.concatenate([part.rows @ query for part in self.parts])
            pages = np.concatenate([p.pages + n for p, n in zip(self.parts, offsets, strict=False)])
        take = min(len(scores), limit * _rows_per_page(self.parts))
        while True:
            if take < len(scores):
                top = np.sort(np.argpartition(scores, len(scores) - take)[len(scores) - take :])
            else:
                top = np.arange(len(scores))
            top = top[np.argsort(-scores[top], kind="stable")]
            # The first (best) row of each page, in score order.
            firsts = np.sort(np.unique(pages[top], return_index=True)[1])
            chosen = top[firsts]
            numbers = pages[chosen].tolist()
            if len(self.parts) == 1:
                names = [self.parts[0].page_ids[n] for n in numbers]
            else:
                names = []
                for n in numbers:
                    k = bisect_right(offsets, n) - 1
                    names.append(self.parts[k].page_ids[n - offsets[k]])
            found: dict[str, float] = {}
            for name, score in zip(names, scores[chosen].tolist(), strict=True):
                found.setdefault(name, score)
            if len(found) >= limit or take == len(scores):
                return list(found.items())[:limit]
            take = min(len(scores), take * 2)


def _rows_per_page(parts: list[Part]) -> int:
    """Rows per page in `parts`, rounded up: how many rows to take per page wanted."""
    rows = sum(len(part.pages) for part in parts)
    pages = sum(int(part.pages[-1]) - int(part.pages[0]) + 1 for part in parts)
    return -(-rows // pages)
