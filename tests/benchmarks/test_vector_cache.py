"""The recall benchmark's vector cache: a text embedded once is answered from the cache,
in this run and, once saved, in the next; the vectors are the embedder's own, in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.recall.chat.vector_cache import VectorCache


class Embedder:
    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def embed_now(self, texts: list[str]) -> np.ndarray:
        self.asked.append(list(texts))
        return np.array([[len(t), ord(t[0]), 1.0] for t in texts], dtype=np.float32)


def test_a_text_is_embedded_once_across_runs(tmp_path: Path) -> None:
    model = Embedder()
    cache = VectorCache(tmp_path, "onnx:model")
    embed = cache.wrap(model.embed_now)
    first = embed(["alpha", "be"])
    again = embed(["be", "gamma", "be"])
    assert model.asked == [["alpha", "be"], ["gamma"]]
    assert np.array_equal(again, model.embed_now(["be", "gamma", "be"]))
    assert np.array_equal(first, model.embed_now(["alpha", "be"]))
    cache.save()
    later = Embedder()
    reloaded = VectorCache(tmp_path, "onnx:model").wrap(later.embed_now)
    assert np.array_equal(reloaded(["gamma", "alpha"]), model.embed_now(["gamma", "alpha"]))
    assert later.asked == []
    # Another model's vectors are never mixed in.
    other = Embedder()
    VectorCache(tmp_path, "onnx:other").wrap(other.embed_now)(["alpha"])
    assert other.asked == [["alpha"]]
