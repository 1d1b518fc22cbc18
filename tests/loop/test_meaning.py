"""Search by meaning through the app: a page that shares no word with the question reaches
the upstream prompt once embedded (and not without embeddings); an embedder that fails
costs the client nothing but is logged and counted. The upstream and its `/v1/embeddings`
are a respx router; the client is the `openai` SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import orjson
import pytest
import respx

from proxy.config import Settings, load_settings
from proxy.http.app import create_app
from proxy.http.state import AppState
from tests.loop.harness import API_KEY, MODEL, UPSTREAM, VM_DEFAULTS
from tests.support.fake_embeddings import embeddings_reply

FACT = "By the way, my puppy is named Biscuit and he loves the beach."
QUESTION = "What is the name of my canine?"
TOPICS = ["gardening tomatoes", "chess openings", "sourdough baking", "tax forms",
          "train timetables", "piano scales", "mountain hiking", "coffee grinders"]  # fmt: skip


def history() -> list[dict[str, str]]:
    messages = [{"role": "user", "content": FACT}, {"role": "assistant", "content": "Noted!"}]
    for n in range(40):
        topic = TOPICS[n % len(TOPICS)]
        messages.append({"role": "user", "content": f"Tell me about {topic}, part {n}, with "
                         f"details on {topic} history and {topic} practice {n}."})  # fmt: skip
        messages.append({"role": "assistant", "content": f"Here is part {n} on {topic}: "
                         + " ".join(f"{topic} fact {n}-{k}." for k in range(8))})  # fmt: skip
    return messages


def settings(provider: str, **embeddings: Any) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "vm": {**VM_DEFAULTS, "recall_share": 1.0, "context_budget": 2500,
                   "activate_above": 1200},
            "store": {"url": "memory://"},
            "upstream": {"base_url": UPSTREAM},
            "embeddings": {"provider": provider, **embeddings},
        },
    )  # fmt: skip


class Upstream:
    def __init__(self, *, embeddings_status: int = 200) -> None:
        self.chats: list[dict[str, Any]] = []
        self.embedded: list[dict[str, Any]] = []
        self.embeddings_status = embeddings_status

    def chat(self, request: httpx.Request) -> httpx.Response:
        self.chats.append(orjson.loads(request.content))
        return httpx.Response(200, json={
            "id": "c1", "object": "chat.completion", "created": 1, "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })  # fmt: skip

    def embed(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        self.embedded.append({"body": body, "auth": request.headers.get("authorization")})
        if self.embeddings_status != 200:
            return httpx.Response(self.embeddings_status, json={"error": {"message": "down"}})
        return httpx.Response(200, json=embeddings_reply(body))


@asynccontextmanager
async def running(config: Settings, upstream: Upstream) -> AsyncIterator[Any]:
    router = respx.Router(assert_all_called=False, assert_all_mocked=True)
    router.post(f"{UPSTREAM}/chat/completions").mock(side_effect=upstream.chat)
    router.post(f"{UPSTREAM}/embeddings").mock(side_effect=upstream.embed)
    app = create_app(config, upstream_transport=httpx.MockTransport(router.async_handler))
    async with asyncio.timeout(30), app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://proxy") as http:  # fmt: skip
            client = openai.AsyncOpenAI(base_url="http://proxy/v1", api_key=API_KEY,
                                        http_client=http, max_retries=0)  # fmt: skip
            yield app, client


async def ask(client: openai.AsyncOpenAI, question: str) -> str:
    reply = await client.chat.completions.create(
        model=MODEL, messages=[*history(), {"role": "user", "content": question}]  # type: ignore[list-item]
    )
    return reply.choices[0].message.content or ""


def sent(body: dict[str, Any]) -> str:
    return orjson.dumps(body["messages"]).decode()


@pytest.mark.parametrize("provider", ["upstream", "off"])
async def test_a_page_found_by_meaning_reaches_the_prompt(provider: str) -> None:
    upstream = Upstream()
    async with running(settings(provider), upstream) as (app, client):
        state: AppState = app.state
        # The first memory-active turn queues the conversation for embedding.
        assert await ask(client, "Which topic did we cover first?") == "ok"
        if provider == "upstream":
            assert state.meaning is not None
            await state.meaning.worker.drain()
        else:
            assert state.meaning is None
        assert await ask(client, QUESTION) == "ok"
    last = upstream.chats[-1]
    assert last["messages"][-1]["content"] == QUESTION or QUESTION in sent(last)
    if provider == "upstream":
        assert "Biscuit" in sent(last)
        # Embedded with the client's own key (no key configured), counted in /metrics.
        assert {e["auth"] for e in upstream.embedded} == {f"Bearer {API_KEY}"}
        assert state.metrics.value("vm_embedded_pages_total") >= len(history())
        assert state.metrics.value("vm_embedding_tokens_total", {"provider": "upstream"}) > 0
    else:
        assert "Biscuit" not in sent(last)
        assert upstream.embedded == []


@pytest.mark.parametrize("neighbours", [{"neighbour_weight": 0.5},
                                        {"neighbours_of": "every_hit"},
                                        {"neighbour_sides": "both"}])  # fmt: skip
async def test_with_neighbours_ranked_or_every_hits_a_page_found_by_meaning_is_shown(
    neighbours: dict[str, Any],
) -> None:
    # embeddings.neighbour_weight: the turns beside BM25's hits compete by rank in the
    # prefetch's fusion; neighbours_of = every_hit: every fused hit brings them along (the
    # default, word_hits, is the first test's).
    upstream = Upstream()
    async with running(settings("upstream", **neighbours), upstream) as (app, client):
        state: AppState = app.state
        assert await ask(client, "Which topic did we cover first?") == "ok"
        assert state.meaning is not None
        await state.meaning.worker.drain()
        assert await ask(client, QUESTION) == "ok"
    assert "Biscuit" in sent(upstream.chats[-1])


async def test_an_embedder_that_fails_costs_the_client_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = Upstream(embeddings_status=500)
    async with running(settings("upstream", max_retries=0), upstream) as (app, client):
        state: AppState = app.state
        assert await ask(client, "Which topic did we cover first?") == "ok"
        assert state.meaning is not None
        await state.meaning.worker.drain()
        assert await ask(client, QUESTION) == "ok"
        failures = {stage: state.metrics.value("vm_embeddings_failures_total", {"stage": stage})
                    for stage in ("pages", "query")}  # fmt: skip
    assert failures["pages"] >= 1 and failures["query"] >= 1
    assert "searching by words alone" in caplog.text
    assert len(upstream.chats) == 2


async def test_a_short_chat_is_never_embedded() -> None:
    upstream = Upstream()
    async with running(settings("upstream"), upstream) as (app, client):
        reply = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hello, my puppy says hi"}]
        )
        assert reply.choices[0].message.content == "ok"
        await app.state.meaning.worker.drain()
    assert upstream.embedded == []


def test_auto_is_upstream_for_openai_onnx_with_a_model_and_off_elsewhere() -> None:
    from proxy.config import resolve_embeddings

    def resolved(**overrides: Any) -> Any:
        return resolve_embeddings(load_settings(environ={}, overrides=overrides)).embeddings

    assert resolved().provider == "upstream"
    assert resolved().base_url == "https://api.openai.com/v1"
    assert resolved(upstream={"base_url": "http://vllm:8000/v1"}).provider == "off"
    assert resolved(embeddings={"path": "/models/minilm"}).provider == "onnx"
    keyed = resolved(upstream={"api_key": "sk-up"})
    assert keyed.api_key == "sk-up"
    # The upstream's key never goes to another embeddings server.
    elsewhere = resolved(upstream={"api_key": "sk-up"},
                         embeddings={"base_url": "http://embed:9000/v1"})  # fmt: skip
    assert elsewhere.api_key == ""


def test_a_page_is_embedded_as_its_passages_with_its_speaker() -> None:
    from proxy.loop.embedding_worker import embedded_texts
    from tests.store.conftest import make_page

    text = "Hi there. I have started to play the accordion lately. It rained all week long here."
    said = make_page(3, text, extra={"speaker": "Hugo"})
    assert embedded_texts(said) == [
        "Hugo: Hi there. I have started to play the accordion lately.",
        "Hugo: It rained all week long here.",
    ]
    assert embedded_texts(make_page(4, "no name here")) == ["no name here"]


async def test_a_named_provider_that_cannot_run_stops_start_up(tmp_path: Any) -> None:
    from proxy.embeddings import EmbeddingError

    try:  # what is missing: the extra, or (with it installed) the model in the folder
        import onnxruntime  # type: ignore[import-untyped]  # noqa: F401
        import tokenizers  # noqa: F401

        missing = "model.onnx does not exist"
    except ImportError:
        missing = "needs the embeddings extra"
    config = settings("onnx", path=str(tmp_path))
    with pytest.raises(EmbeddingError, match=missing):
        async with running(config, Upstream()):
            pass
