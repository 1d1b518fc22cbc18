"""The recorded Responses exchanges (../shared/recorded/responses) replayed through the
proxy below the threshold: the client gets every reply byte for byte, streams included,
whatever the server (OpenAI, Azure, DeepSeek, OpenRouter, Bedrock, xAI, LM Studio,
Copilot); each answer is stored on the way, so `previous_response_id` naming it
continues the conversation from the proxy's store, never from the upstream's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx

from proxy.http.app import create_app
from proxy.store import open_store
from tests.loop.harness import API_KEY, vm_settings
from tests.loop.scripted import Pieces
from tests.upstream.responses_recordings import Exchange, files, of_file

HEADERS = {"authorization": f"Bearer {API_KEY}"}


@dataclass
class Upstream:
    """Answers each request with the next recorded reply, keeping what it was sent."""

    replies: list[Exchange]
    requests: list[httpx.Request] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        exchange = self.replies.pop(0)
        body = exchange.body
        # Cut at arbitrary points, as a network delivers a body.
        pieces = [body[i : i + 211] for i in range(0, len(body), 211)]
        return httpx.Response(exchange.status, stream=Pieces(pieces),
                              headers={"content-type": exchange.content_type})


@asynccontextmanager
async def proxy_for(upstream: Upstream) -> AsyncIterator[httpx.AsyncClient]:
    # Everything below the threshold: the requests are relayed, never packed.
    settings = vm_settings(context_budget=200_000, activate_above=200_000)
    router = respx.Router(assert_all_mocked=True)
    router.route(host="upstream.test").mock(side_effect=upstream)
    store = await open_store("memory://")
    app = create_app(settings, upstream_transport=httpx.MockTransport(router.async_handler),
                     store=store)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy"
        ) as client:
            yield client
    finally:
        await store.close()


def _request(exchange: Exchange) -> dict[str, Any]:
    if exchange.request is not None:
        return exchange.request
    return {"model": "gpt-5", "input": "Hello", "stream": exchange.is_stream}


def _response_id(exchange: Exchange) -> str | None:
    if exchange.status != 200 or exchange.method != "POST":
        return None
    if not exchange.is_stream:
        return str(json.loads(exchange.body)["id"])
    for line in exchange.body.decode().splitlines():
        if line.startswith("data:") and '"response.completed"' in line:
            return str(json.loads(line[5:])["response"]["id"])
    return None


@pytest.mark.parametrize("name", files())
async def test_replay_is_byte_for_byte(name: str) -> None:
    recorded = of_file(name)
    upstream = Upstream(list(recorded))
    async with proxy_for(upstream) as client:
        for exchange in recorded:
            if exchange.method == "GET":
                reply = await client.get("/v1" + exchange.path, headers=HEADERS)
            else:
                reply = await client.post("/v1/responses", json=_request(exchange),
                                          headers=HEADERS)
            assert reply.status_code == exchange.status, reply.text
            if exchange.status < 400:
                assert reply.content == exchange.body
            else:
                assert reply.json() == json.loads(exchange.body)
        assert upstream.replies == []
        for sent in upstream.requests:
            if sent.method == "POST":
                assert not json.loads(sent.content).get("previous_response_id")
        last = _response_id(recorded[-1])
        if last is None:
            return
        # The last answer, as relayed, is what the proxy stored for the conversation.
        upstream.replies.append(recorded[-1])
        follow = await client.post("/v1/responses", headers=HEADERS, json={
            "model": "gpt-5", "input": "And then?", "previous_response_id": last})
    assert follow.status_code == 200
    sent = json.loads(upstream.requests[-1].content)
    assert "previous_response_id" not in sent
    assert sent["input"][-1] == {"role": "user", "content": "And then?"}
    assert len(sent["input"]) >= 3  # the history before it, from the proxy's store


async def test_the_chained_recording_continues_from_the_store() -> None:
    recorded = of_file(
        "pydantic-ai__test_openai_previous_response_id_seed_auto_chains_through_retries.yaml")
    upstream = Upstream(list(recorded))
    async with proxy_for(upstream) as client:
        for exchange in recorded:
            reply = await client.post("/v1/responses", json=_request(exchange), headers=HEADERS)
            assert reply.content == exchange.body
    # Calls 2-4 named the answer before them; the proxy sent the conversation instead,
    # which ends with that answer's items and the request's own new input.
    for number, exchange in enumerate(recorded[1:], start=1):
        sent = json.loads(upstream.requests[number].content)
        assert "previous_response_id" not in sent
        answered = json.loads(recorded[number - 1].body)["output"]
        new = exchange.request["input"] if exchange.request else []
        assert sent["input"][-len(new) - len(answered):-len(new)] == answered
        assert sent["input"][-len(new):] == new
