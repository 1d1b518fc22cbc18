"""`embeddings.provider = onnx` with the shared all-MiniLM-L6-v2 int8 model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from proxy.embeddings import EmbeddingError
from proxy.embeddings.local import OnnxEmbedder
from tests.support.shared_model import MODEL_DIR, needs_model


@needs_model
async def test_sentences_of_one_meaning_are_near() -> None:
    pytest.importorskip("onnxruntime", reason="the embeddings extra is not installed")
    embedder = OnnxEmbedder.load(str(MODEL_DIR))
    try:
        texts = ["A dog is running in the park", "A puppy plays outside on the grass",
                 "The quarterly tax filing is due in April"]  # fmt: skip
        vectors = await embedder.embed(texts)
        urgent = await embedder.embed(texts[:1], urgent=True)
    finally:
        await embedder.aclose()
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.3 > vectors[0] @ vectors[2] + 0.2
    # Sorting by length inside a call must not reorder the answer.
    assert np.allclose(urgent[0], vectors[0], atol=1e-5)
    assert embedder.name == "onnx:all-MiniLM-L6-v2-int8"


def test_a_folder_without_the_model_is_named(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the embeddings extra is not installed")
    with pytest.raises(EmbeddingError, match="model.onnx does not exist"):
        OnnxEmbedder.load(str(tmp_path))
