"""A deterministic stand-in for an embedding model: words of one meaning share a direction.

Each word of CONCEPTS maps to its concept's dimension (weighted, so meaning dominates);
any other word to one of the remaining dimensions by a stable hash. Texts that say the same
thing in different words ("puppy", "canine") are then near, as with a real model, while
BM25 sees nothing in common. `FakeEmbedder` is the in-process form (the Embedder
protocol), `embeddings_reply` the body an OpenAI-compatible `/v1/embeddings` answers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

DIM = 64
CONCEPT_WEIGHT = 4.0
CONCEPTS = {
    "dog": 0, "dogs": 0, "puppy": 0, "canine": 0, "hound": 0, "pup": 0,
    "car": 1, "automobile": 1, "vehicle": 1, "sedan": 1,
    "sister": 2, "sibling": 2, "brother": 2,
    "doctor": 3, "physician": 3, "clinic": 3,
}  # fmt: skip
_CONCEPT_DIMS = 8


def fake_vector(text: str) -> list[float]:
    vector = [0.0] * DIM
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in CONCEPTS:
            vector[CONCEPTS[word]] += CONCEPT_WEIGHT
        else:
            digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
            vector[_CONCEPT_DIMS + int.from_bytes(digest, "big") % (DIM - _CONCEPT_DIMS)] += 1.0
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def embeddings_reply(body: dict[str, Any]) -> dict[str, Any]:
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    return {
        "object": "list",
        "model": body["model"],
        "data": [{"object": "embedding", "index": i, "embedding": fake_vector(t)}
                 for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": sum(len(t.split()) for t in texts),
                  "total_tokens": sum(len(t.split()) for t in texts)},
    }  # fmt: skip


class FakeEmbedder:
    """The Embedder protocol over `fake_vector`; `fail_after` calls, it raises."""

    def __init__(self, name: str = "fake", *, fail_after: int | None = None) -> None:
        self._name = name
        self.calls = 0
        self.fail_after = fail_after

    @property
    def name(self) -> str:
        return self._name

    async def embed(
        self, texts: Sequence[str], *, auth: Any = (), urgent: bool = False
    ) -> npt.NDArray[np.float32]:
        from proxy.embeddings import EmbeddingError

        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise EmbeddingError("the fake embedder was told to fail")
        return np.array([fake_vector(t) for t in texts], dtype=np.float32).reshape(-1, DIM)

    async def aclose(self) -> None:
        pass
