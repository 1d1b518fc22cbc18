"""Reciprocal rank fusion: several rankings of the same pages made one, pure.

A page's fused score is the sum over the rankings that hold it of `weight / (k + rank)`
(rank 0 first). Only ranks count, never the rankers' own scores, so BM25's unbounded
scores and cosine similarities mix without calibration, and a page two rankers agree on
rises above one that only one ranker likes. `k` = 60 is the value of the original paper
(Cormack et al., 2009); the issue's held-out chats measured fusion this way at 83.0%
evidence recall against 73.4% for BM25 and 81.8% for embeddings alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

RRF_K = 60.0


def fuse_rankings(
    rankings: Sequence[Sequence[str]],
    *,
    weights: Sequence[float] | None = None,
    k: float = RRF_K,
    limit: int | None = None,
) -> list[tuple[str, float]]:
    """(id, fused score), best first; ties keep the order in which ids were first met
    (the first ranking's order first). Ids repeated within one ranking count once, at their
    best rank."""
    scores: dict[str, float] = {}
    for index, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[index]
        seen: set[str] = set()
        for rank, item in enumerate(ranking):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = {item: n for n, item in enumerate(scores)}
    fused = sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))
    return fused if limit is None else fused[:limit]


def beside(ranking: Sequence[T], neighbours: Callable[[T], Sequence[str]]) -> list[str]:
    """The ranking an id earns by standing next to a ranked item: each item's
    `neighbours`, in `ranking`'s order (each id once, at its first place). Fused as one
    more ranking, a turn next to the best hits rises with them, yet competes with the other
    hits on its own rank instead of coming along with every hit."""
    found: dict[str, None] = {}
    for item in ranking:
        for near in neighbours(item):
            found.setdefault(near, None)
    return list(found)
