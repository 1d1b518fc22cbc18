"""`embeddings.provider = onnx`: a sentence-embedding model run in this process.

The folder holds `model.onnx` (inputs `input_ids`, `attention_mask`, `token_type_ids`,
output the last hidden state) and `tokenizer.json`; a text's vector is the mean of the
hidden state over its tokens, L2-normalised (sentence-transformers' recipe, e.g.
all-MiniLM-L6-v2). onnxruntime runs with one thread per call, on threads of its own:
never on the event loop. The background worker's batches have one thread; a turn's query
(`urgent`), which a client waits for, has another, so it never queues behind them
(onnxruntime's `run` may be called from several threads at once). Inputs are cut at
MAX_TOKENS word pieces (what such models were trained at).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from proxy.embeddings.base import Auth, EmbeddingError

MAX_TOKENS = 256
# Texts run through the model together. One: on this 2-core machine the int8 model
# embedded 18-23 messages a second run one by one and fewer in runs of 8, 16 or 32
# (0.5-0.85x, benchmarks/embeddings.py; each run pads to its longest text).
RUN_SIZE = 1


class OnnxEmbedder:
    def __init__(self, session: Any, tokenizer: Any, name: str) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._name = name
        self.run_size = RUN_SIZE
        self._background = concurrent.futures.ThreadPoolExecutor(1, "vm-embeddings")
        self._queries = concurrent.futures.ThreadPoolExecutor(1, "vm-embeddings-query")

    @staticmethod
    def files(folder: str) -> tuple[Path, Path]:
        """The model's and the tokenizer's files in `folder`, once the extra is installed
        and both exist (EmbeddingError else): what `load` needs, checked without loading."""
        try:
            import onnxruntime  # type: ignore[import-untyped]  # noqa: F401
            import tokenizers  # noqa: F401
        except ImportError as exc:
            raise EmbeddingError(
                f"embeddings.provider = onnx needs the embeddings extra "
                f"(pip install 'vm-proxy[embeddings]'): {exc}"
            ) from None
        root = Path(folder).expanduser()
        model, vocab = root / "model.onnx", root / "tokenizer.json"
        for needed in (model, vocab):
            if not needed.is_file():
                raise EmbeddingError(f"embeddings.path: {needed} does not exist")
        return model, vocab

    @classmethod
    def load(cls, folder: str) -> OnnxEmbedder:
        model, vocab = cls.files(folder)
        root = model.parent
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
            tokenizer = Tokenizer.from_file(str(vocab))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EmbeddingError(f"embeddings.path: cannot load {root}: {exc}") from exc
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding()
        return cls(session, tokenizer, f"onnx:{root.name}")

    @property
    def name(self) -> str:
        return self._name

    async def embed(
        self, texts: Sequence[str], *, auth: Auth = (), urgent: bool = False
    ) -> npt.NDArray[np.float32]:
        loop = asyncio.get_running_loop()
        thread = self._queries if urgent else self._background
        try:
            return await loop.run_in_executor(thread, self.embed_now, list(texts))
        except RuntimeError as exc:  # the executor is shut down
            raise EmbeddingError(f"onnx embedder is closed: {exc}") from exc

    def embed_now(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Blocking: the vectors of `texts` (called on the embedder's thread)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows: list[npt.NDArray[np.float32]] = []
        size = self.run_size
        for start in range(0, len(order), size):
            rows.append(self._run([texts[i] for i in order[start : start + size]]))
        vectors = np.concatenate(rows)
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    def _run(self, texts: list[str]) -> npt.NDArray[np.float32]:
        try:
            encoded = self._tokenizer.encode_batch(texts)
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            hidden = self._session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
        except Exception as exc:  # onnxruntime and tokenizers raise their own untyped errors
            raise EmbeddingError(f"onnx embedder failed: {exc}") from exc
        weights = mask[..., None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return unit_rows(summed)

    async def aclose(self) -> None:
        self._background.shutdown(wait=False, cancel_futures=True)
        self._queries.shutdown(wait=False, cancel_futures=True)


def unit_rows(matrix: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Each row scaled to length 1 (a zero row stays zero)."""
    rows = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = (rows / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit
