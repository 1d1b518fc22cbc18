"""`embeddings.provider = upstream`: `POST {base_url}/embeddings` of an OpenAI-compatible
server, in batches of `embeddings.batch_size`, retried with backoff on 429, 5xx and
transport errors (a `retry-after` is honoured up to MAX_WAIT_S). The tokens it bills are
counted in /metrics (`vm_embedding_tokens_total`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson

from proxy.config import EmbeddingsSettings
from proxy.embeddings.base import Auth, EmbeddingError
from proxy.embeddings.local import unit_rows
from proxy.metrics import Metrics

FIRST_WAIT_S = 0.5
MAX_WAIT_S = 8.0
_RETRIED = frozenset({408, 409, 429, 500, 502, 503, 504})


class RemoteEmbedder:
    def __init__(
        self,
        settings: EmbeddingsSettings,
        metrics: Metrics,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        # A base URL's own query (Azure's api-version) goes after the path.
        base, _, query = settings.base_url.partition("?")
        self._url = f"{base}/embeddings" + (f"?{query}" if query else "")
        self._client = httpx.AsyncClient(transport=transport, timeout=settings.timeout_s)
        self._tokens = metrics.counter(
            "vm_embedding_tokens_total", {"provider": "upstream"},
            help="Tokens billed by the upstream's embeddings route",
        )  # fmt: skip
        self._sleep = asyncio.sleep

    @property
    def name(self) -> str:
        return f"upstream:{self._settings.model}"

    async def embed(
        self, texts: Sequence[str], *, auth: Auth = (), urgent: bool = False
    ) -> npt.NDArray[np.float32]:
        size = self._settings.batch_size
        rows = [await self._batch(list(texts[i : i + size]), auth)
                for i in range(0, len(texts), size)]  # fmt: skip
        return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    async def _batch(self, texts: list[str], auth: Auth) -> npt.NDArray[np.float32]:
        # An empty string is refused by OpenAI's API: a blank page embeds as one space.
        body = {"model": self._settings.model, "input": [t or " " for t in texts],
                "encoding_format": "float"}  # fmt: skip
        headers = self._headers(auth)
        attempt = 0
        while True:
            wait = FIRST_WAIT_S * 2**attempt
            try:
                response = await self._client.post(
                    self._url, content=orjson.dumps(body), headers=headers
                )
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return self._vectors(response, len(texts))
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in _RETRIED:
                    raise EmbeddingError(f"embeddings upstream refused: {problem}")
                wait = max(wait, _retry_after(response))
            if attempt >= self._settings.max_retries:
                raise EmbeddingError(
                    f"embeddings upstream failed after {attempt + 1} tries: {problem}"
                )
            attempt += 1
            await self._sleep(min(wait, MAX_WAIT_S))

    def _headers(self, auth: Auth) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self._settings.api_key:
            headers["authorization"] = f"Bearer {self._settings.api_key}"
        else:
            headers.update(auth)
        return headers

    def _vectors(self, response: httpx.Response, count: int) -> npt.NDArray[np.float32]:
        try:
            payload: Any = orjson.loads(response.content)
            data = sorted(payload["data"], key=lambda item: int(item["index"]))
            vectors = np.array([item["embedding"] for item in data], dtype=np.float32)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"embeddings upstream answered no vectors: {exc}") from exc
        if vectors.ndim != 2 or len(vectors) != count:
            raise EmbeddingError(
                f"embeddings upstream answered {len(vectors)} vectors for {count} texts"
            )
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            self._tokens.inc(usage["prompt_tokens"])
        return unit_rows(vectors)

    async def aclose(self) -> None:
        await self._client.aclose()


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("retry-after", "0"))
    except ValueError:
        return 0.0
