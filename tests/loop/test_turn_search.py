"""The turn's fused search (proxy.loop.meaning.TurnSearch) over a fake store and vector
index: the prefetch's search ranks the messages beside BM25's hits as a third ranking and
says so, or names the hits BM25 found (the ones that bring their neighbours along);
`search_pages`' search, BM25 alone, and a failed vector search do neither."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from proxy.config import EmbeddingsSettings
from proxy.embeddings import EmbeddingError
from proxy.loop.meaning import Meaning, TurnSearch
from proxy.metrics import Metrics
from proxy.store.base import Path, PathSpan, SearchHit
from proxy.vm.pages import Modality, Page, PageKind

PATH = Path("t", (PathSpan("c", 0, None),))


def message(position: int) -> Page:
    text = f"message {position}"
    return Page(f"msg_{position}", PageKind.TRANSCRIPT, Modality.TEXT, position, position,
                "user", (text,) * 4, (3, 3, 3, 3), text,
                message={"role": "user", "content": text})  # fmt: skip


class Store:
    def __init__(self, words: Sequence[int]) -> None:
        self.pages = {f"msg_{n}": message(n) for n in range(100)}
        self.words = [f"msg_{n}" for n in words]

    async def search(self, path: Path, query: str, limit: int = 10,
                     modality: Modality | None = None) -> list[SearchHit]:  # fmt: skip
        return [SearchHit(self.pages[pid], 10.0 - n) for n, pid in enumerate(self.words[:limit])]

    async def get_pages(self, path: Path, ids: Sequence[str]) -> dict[str, Page]:
        return {pid: self.pages[pid] for pid in ids if pid in self.pages}


class Index:
    def __init__(self, near: Sequence[int]) -> None:
        self.near = [f"msg_{n}" for n in near]

    async def search(
        self, path: Path, space: str, query: Any, limit: int
    ) -> list[tuple[str, float]]:
        return [(pid, 0.9) for pid in self.near[:limit]]


class Embedder:
    name = "fake"

    def __init__(self, fails: bool = False) -> None:
        self.fails = fails

    async def embed(self, texts: Sequence[str], *, auth: Any = (), urgent: bool = False) -> Any:
        if self.fails:
            raise EmbeddingError("down")
        return np.ones((len(texts), 4), dtype=np.float32)

    async def aclose(self) -> None:
        return None


def turn_search(words: Sequence[int], near: Sequence[int], *, fails: bool = False,
                **settings: Any) -> TurnSearch:  # fmt: skip
    meaning = Meaning(EmbeddingsSettings(provider="onnx", **settings), Embedder(fails),  # type: ignore[arg-type]
                      Index(near), None, Metrics())  # type: ignore[arg-type]  # fmt: skip
    return TurnSearch(Store(words), meaning)  # type: ignore[arg-type]


def ids(hits: Sequence[SearchHit]) -> list[str]:
    return [hit.page.page_id for hit in hits]


# BM25 finds the turn that asked (msg_10) and a few others; meaning finds msg_50 and msg_60.
WORDS = [10, 20, 30, 40, 41, 42, 43, 44, 45, 46, 47, 48]
NEAR = [50, 60, 20]


async def test_the_prefetch_ranks_the_turns_beside_words_hits_among_the_hits() -> None:
    search = turn_search(WORDS, NEAR, neighbour_weight=0.5)
    hits = ids(await search.search(PATH, "q", 10, text="the question", neighbours=True))
    assert search.ranked_neighbours
    # The answer beside the best word hit outranks the word hits far down the list...
    assert hits.index("msg_11") < hits.index("msg_47")
    # ...but the turns beside the hits by meaning are not brought: meaning found the fact.
    assert "msg_51" not in hits and "msg_61" not in hits
    assert {"msg_50", "msg_60", "msg_20"} <= set(hits)
    # The pool the limit was sized for: a hit and its two neighbours each.
    assert 10 < len(hits) <= 30


async def test_search_pages_and_a_zero_neighbour_weight_fuse_two_rankings() -> None:
    search = turn_search(WORDS, NEAR, neighbour_weight=0.5)
    hits = ids(await search.search(PATH, "q", 10, text="the question"))
    assert not search.ranked_neighbours and len(hits) == 10 and "msg_11" not in hits
    search = turn_search(WORDS, NEAR, neighbour_weight=0.0)
    hits = ids(await search.search(PATH, "q", 10, text="the question", neighbours=True))
    assert not search.ranked_neighbours and "msg_11" not in hits


@pytest.mark.parametrize("fusion_weight", [0.5, 1.0])
async def test_meaning_keeps_its_balance_against_the_words_and_their_neighbours(
    fusion_weight: float,
) -> None:
    # msg_10 is first by words, msg_50 first by meaning; msg_11 stands beside msg_10. The
    # words side now weighs 1 + neighbour_weight (its hits and their neighbours): meaning's
    # weight grows by as much, so `fusion_weight` keeps meaning's share of the whole.
    search = turn_search([10], [50], neighbour_weight=0.5, fusion_weight=fusion_weight)
    hits = await search.search(PATH, "q", 10, text="the question", neighbours=True)
    scores = {hit.page.page_id: hit.score for hit in hits}
    assert scores["msg_50"] == pytest.approx(fusion_weight * 1.5 / 10)
    assert scores["msg_10"] == pytest.approx(1 / 10)
    assert scores["msg_11"] == pytest.approx(0.5 / 11)


async def test_without_vectors_the_prefetch_keeps_bm25s_hits_and_says_nothing_was_ranked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    search = turn_search(WORDS, NEAR, fails=True, neighbour_weight=0.5)
    hits = ids(await search.search(PATH, "q", 10, text="the question", neighbours=True))
    assert hits == [f"msg_{n}" for n in WORDS[:10]]
    # The turn then brings each hit's neighbours along, as with BM25 alone.
    assert not search.ranked_neighbours
    assert "searching by words alone" in caplog.text


async def test_with_word_hits_the_prefetch_names_the_hits_bm25_found() -> None:
    search = turn_search(WORDS, NEAR)  # word_hits: the default
    hits = ids(await search.search(PATH, "q", 10, text="the question", neighbours=True))
    assert search.word_hits == {f"msg_{n}" for n in WORDS[:10]}
    assert {"msg_50", "msg_60"} <= set(hits) and not search.ranked_neighbours
    assert "msg_50" not in search.word_hits  # found by meaning alone: it comes alone


async def test_every_hit_ranked_neighbours_or_no_vectors_name_no_word_hits() -> None:
    for search, fused in (
        (turn_search(WORDS, NEAR, neighbours_of="every_hit"), True),
        (turn_search(WORDS, NEAR, neighbours_of="word_hits", neighbour_weight=0.5), True),
        (turn_search(WORDS, NEAR, fails=True, neighbours_of="word_hits"), False),
    ):
        await search.search(PATH, "q", 10, text="the question", neighbours=True)
        assert search.word_hits is None
        assert search.ranked_neighbours is (fused and search._meaning is not None
                                            and search._meaning.settings.neighbour_weight > 0)
    search = turn_search(WORDS, NEAR, neighbours_of="word_hits")
    await search.search(PATH, "q", 10, text="the question")  # search_pages: not the prefetch
    assert search.word_hits is None
