"""Vectors of the benchmark's texts kept between runs (`--vector-cache DIR`).

On this 2-core machine the local model embeds about 20 texts a second, and each proxy run
embeds its whole history again (a fresh app per behaviour), so a dialogue run with
embeddings spends most of its time re-embedding the same passages. With a cache the
proxy's embedder still runs for every text it has never seen, and a text it has seen gets
the same vector the model gave it then (the model is deterministic on one thread), so the
recall measured is the same; only the time spent embedding is not. The worker, the vector
index and the query path are the proxy's own, untouched.

The cache is one `.npz` per model (each text's SHA-1 and its vector), written after each
run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np


class VectorCache:
    def __init__(self, folder: Path, model: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha1(model.encode()).hexdigest()[:12]
        self.path = folder / f"vectors-{tag}.npz"
        self.rows: dict[str, Any] = {}
        self.hits = 0
        self.misses = 0
        self._saved = 0
        if self.path.exists():
            with np.load(self.path, allow_pickle=False) as data:
                self.rows = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
            self._saved = len(self.rows)

    def wrap(self, embed_now: Any) -> Any:
        """`embed_now(texts) -> (n, dim)` answered from the cache where it can."""

        def cached(texts: list[str]) -> Any:
            if not texts:
                return embed_now(texts)
            keys = [_key(t) for t in texts]
            missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in self.rows}
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
            if missing:
                for key, row in zip(missing, embed_now(list(missing.values())), strict=True):
                    self.rows[key] = row
            return np.stack([self.rows[k] for k in keys]).astype(np.float32)

        return cached

    def save(self) -> None:
        if len(self.rows) == self._saved:
            return
        keys = list(self.rows)
        partial = self.path.with_suffix(".tmp.npz")
        np.savez(partial, keys=np.array(keys), vectors=np.stack([self.rows[k] for k in keys]))
        partial.replace(self.path)
        self._saved = len(keys)


def _key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()
