"""Sentence embeddings for retrieval by meaning (issue 14), chosen by `embeddings.provider`:

    embedder = open_embedder(settings.embeddings, metrics, transport=None)
    vectors = await embedder.embed(["a text", ...], auth=())   # (n, dim) float32, unit length
    await embedder.aclose()

`upstream`: the upstream's (or `embeddings.base_url`'s) `POST /embeddings`
(proxy.embeddings.remote); `onnx`: a local model folder run with onnxruntime
(proxy.embeddings.local, needs the `embeddings` extra). numpy is imported only here and
by the vector search, which exist only when embeddings are on.
"""

from __future__ import annotations

import os

import httpx

from proxy.config import EmbeddingsSettings
from proxy.embeddings.base import Embedder, EmbeddingError
from proxy.metrics import Metrics

__all__ = ["Embedder", "EmbeddingError", "check_embedder", "open_embedder"]

# numpy's OpenBLAS starts a thread per core for each vector product, and on a small machine
# they spin against the event loop and onnxruntime: a search at 10k pages took ~10 ms of
# CPU with them and 2.5 ms with one (benchmarks/embeddings.py). Only numpy's first import
# reads it, so it is set here, when the proxy is imported; a value the user set stays.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def check_embedder(settings: EmbeddingsSettings) -> None:
    """Raise EmbeddingError when the embedder `settings` name cannot run here, as far as
    can be told without loading it (start-up's one-line check; `open_embedder` loads)."""
    if settings.provider == "onnx":
        from proxy.embeddings.local import OnnxEmbedder

        OnnxEmbedder.files(settings.path)


def open_embedder(
    settings: EmbeddingsSettings,
    metrics: Metrics,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Embedder | None:
    """The embedder `settings` name (`provider` already resolved), None when off. Raises
    EmbeddingError when it cannot run here (a missing extra, a missing model file)."""
    if settings.provider == "upstream":
        from proxy.embeddings.remote import RemoteEmbedder

        return RemoteEmbedder(settings, metrics, transport=transport)
    if settings.provider == "onnx":
        from proxy.embeddings.local import OnnxEmbedder

        return OnnxEmbedder.load(settings.path)
    return None
