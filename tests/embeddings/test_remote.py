"""`embeddings.provider = upstream` against a fake `/v1/embeddings` (respx)."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import respx

from proxy.config import EmbeddingsSettings
from proxy.embeddings import EmbeddingError
from proxy.embeddings.remote import RemoteEmbedder
from proxy.metrics import Metrics
from tests.support.fake_embeddings import embeddings_reply, fake_vector

URL = "http://embed.test/v1"


def embedder(router: respx.Router, metrics: Metrics, **settings: Any) -> RemoteEmbedder:
    config = EmbeddingsSettings(provider="upstream", base_url=URL, **settings)
    made = RemoteEmbedder(config, metrics, transport=httpx.MockTransport(router.async_handler))
    made._sleep = _no_wait  # type: ignore[method-assign]
    return made


async def _no_wait(seconds: float) -> None:
    pass


def answering(log: list[dict[str, Any]], statuses: list[int] | None = None) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        log.append({"body": body, "auth": request.headers.get("authorization")})
        if statuses:
            return httpx.Response(statuses.pop(0), json={"error": {"message": "busy"}})
        return httpx.Response(200, json=embeddings_reply(body))

    return answer


async def test_texts_go_in_batches_and_their_tokens_are_counted() -> None:
    router = respx.Router(assert_all_mocked=True)
    log: list[dict[str, Any]] = []
    router.post(f"{URL}/embeddings").mock(side_effect=answering(log))
    metrics = Metrics()
    made = embedder(router, metrics, batch_size=2, api_key="sk-embed")
    texts = ["my puppy", "a sedan", "the clinic", "hello there", "one more"]
    vectors = await made.embed(texts)
    await made.aclose()
    assert [len(entry["body"]["input"]) for entry in log] == [2, 2, 1]
    assert {entry["body"]["model"] for entry in log} == {"text-embedding-3-small"}
    assert {entry["auth"] for entry in log} == {"Bearer sk-embed"}
    assert np.allclose(vectors, np.array([fake_vector(t) for t in texts]), atol=1e-6)
    assert metrics.value("vm_embedding_tokens_total", {"provider": "upstream"}) == 10
    assert made.name == "upstream:text-embedding-3-small"


async def test_without_a_key_of_its_own_the_requests_credential_is_used() -> None:
    router = respx.Router(assert_all_mocked=True)
    log: list[dict[str, Any]] = []
    router.post(f"{URL}/embeddings").mock(side_effect=answering(log))
    made = embedder(router, Metrics())
    await made.embed(["a"], auth=[("authorization", "Bearer sk-client")])
    await made.aclose()
    assert log[0]["auth"] == "Bearer sk-client"


async def test_busy_answers_are_retried_then_succeed() -> None:
    router = respx.Router(assert_all_mocked=True)
    log: list[dict[str, Any]] = []
    router.post(f"{URL}/embeddings").mock(side_effect=answering(log, [429, 503]))
    made = embedder(router, Metrics(), max_retries=3)
    vectors = await made.embed(["my puppy"])
    await made.aclose()
    assert len(log) == 3
    assert vectors.shape == (1, 64)


async def test_retries_run_out() -> None:
    router = respx.Router(assert_all_mocked=True)
    log: list[dict[str, Any]] = []
    router.post(f"{URL}/embeddings").mock(side_effect=answering(log, [503] * 5))
    made = embedder(router, Metrics(), max_retries=2)
    with pytest.raises(EmbeddingError, match="after 3 tries"):
        await made.embed(["x"])
    await made.aclose()
    assert len(log) == 3


async def test_a_refusal_is_not_retried() -> None:
    router = respx.Router(assert_all_mocked=True)
    log: list[dict[str, Any]] = []
    router.post(f"{URL}/embeddings").mock(side_effect=answering(log, [401]))
    made = embedder(router, Metrics())
    with pytest.raises(EmbeddingError, match="refused: HTTP 401"):
        await made.embed(["x"])
    await made.aclose()
    assert len(log) == 1


async def test_an_answer_without_vectors_is_an_error() -> None:
    router = respx.Router(assert_all_mocked=True)
    router.post(f"{URL}/embeddings").mock(return_value=httpx.Response(200, json={"data": []}))
    made = embedder(router, Metrics())
    with pytest.raises(EmbeddingError, match="0 vectors for 1 texts"):
        await made.embed(["x"])
    await made.aclose()
