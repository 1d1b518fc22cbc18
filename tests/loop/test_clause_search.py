"""Search by meaning with the query's clauses (`embeddings.clause_weight`): each clause of a
question joining two facts is searched beside the whole and the rankings fused, so the fact
the whole question lies far from still ranks (1.5 by default); off (0), the whole alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from proxy.config import EmbeddingsSettings
from proxy.embeddings import EmbeddingError
from proxy.loop.meaning import Meaning, TurnSearch
from proxy.metrics import Metrics
from tests.loop.test_turn_search import PATH, Store, ids

QUESTION = "How many years will I be when my friend Rachel gets married?"
TEXTS = [QUESTION, "How many years will I be", "when my friend Rachel gets married"]
# Page numbers nearest each text: the whole is drawn to the wedding (msg_60) and to noise;
# the user's age (msg_70) is first only for its own clause.
NEAR = {
    0: [60, 1, 2, 3, 4, 5, 6, 7, 8, 70],
    1: [70, 11, 12],
    2: [60, 61, 62],
}


class TextEmbedder:
    name = "fake"

    def __init__(self, fails_on: str = "") -> None:
        self.embedded: list[str] = []
        self.fails_on = fails_on

    async def embed(self, texts: Sequence[str], *, auth: Any = (), urgent: bool = False) -> Any:
        if self.fails_on in texts:
            raise EmbeddingError("down")
        self.embedded.extend(texts)
        return np.array([[float(TEXTS.index(t))] for t in texts], dtype=np.float32)

    async def aclose(self) -> None:
        return None


class TextIndex:
    async def search(
        self, path: Any, space: str, query: Any, limit: int
    ) -> list[tuple[str, float]]:
        return [(f"msg_{n}", 0.5) for n in NEAR[int(query[0])][:limit]]


def turn_search(fails_on: str = "", **settings: Any) -> tuple[TurnSearch, TextEmbedder]:
    embedder = TextEmbedder(fails_on)
    meaning = Meaning(EmbeddingsSettings(provider="onnx", **settings), embedder,  # type: ignore[arg-type]
                      TextIndex(), None, Metrics())  # type: ignore[arg-type]  # fmt: skip
    return TurnSearch(Store([30, 31]), meaning), embedder  # type: ignore[arg-type]


async def test_the_clauses_bring_the_fact_the_whole_question_lies_far_from() -> None:
    search, embedder = turn_search(clause_weight=1.0)
    hits = ids(await search.search(PATH, "q", 6, text=QUESTION))
    assert "msg_70" in hits and hits.index("msg_60") < hits.index("msg_70")
    assert sorted(embedder.embedded) == sorted(TEXTS)


async def test_on_by_default() -> None:
    search, embedder = turn_search()
    hits = ids(await search.search(PATH, "q", 6, text=QUESTION))
    assert "msg_70" in hits and sorted(embedder.embedded) == sorted(TEXTS)


async def test_off_the_whole_question_alone_is_searched() -> None:
    search, embedder = turn_search(clause_weight=0.0)
    hits = ids(await search.search(PATH, "q", 6, text=QUESTION))
    assert "msg_70" not in hits and embedder.embedded == [QUESTION]


async def test_a_clause_that_cannot_be_embedded_leaves_the_words_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    search, _ = turn_search(fails_on=TEXTS[2], clause_weight=1.0)
    hits = ids(await search.search(PATH, "q", 6, text=QUESTION))
    assert hits == ["msg_30", "msg_31"]
    assert "searching by words alone" in caplog.text
