"""The HTTP edge in process: the app behind an ASGI client, its upstream a handler function.

    async with edge(handler) as proxy:        # handler(httpx.Request) -> httpx.Response
        await proxy.http.post("/v1/chat/completions", json=...)
        proxy.app.state.metrics

The chat tests here run with `vm.mode=off`: they are about the edge and the pass-through,
not the fault loop (tests/loop) nor the pass-through suite (tests/upstream/relay).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette

from proxy.config import Settings, load_settings
from proxy.http.app import create_app
from proxy.store import open_store
from proxy.store.base import PageStore

UPSTREAM = "http://upstream.test/v1"
Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def settings_with(**sections: Mapping[str, Any]) -> Settings:
    layers: dict[str, dict[str, Any]] = {
        "store": {"url": "memory://"},
        "upstream": {"base_url": UPSTREAM},
        "vm": {"mode": "off"},
    }
    for name, values in sections.items():
        layers.setdefault(name, {}).update(values)
    return load_settings(environ={}, overrides=layers)


@dataclass
class Edge:
    app: Starlette
    http: httpx.AsyncClient
    seen: list[httpx.Request]


@asynccontextmanager
async def edge(
    handler: Handler, settings: Settings | None = None, *, store: PageStore | None = None
) -> AsyncIterator[Edge]:
    seen: list[httpx.Request] = []

    async def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        response = handler(request)
        if not isinstance(response, httpx.Response):
            response = await response
        return response

    own_store = store is None
    store = store or await open_store("memory://")
    app = create_app(
        settings or settings_with(),
        upstream_transport=httpx.MockTransport(recording),
        store=store,
    )
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
                yield Edge(app, http, seen)
    finally:
        if own_store:
            await store.close()


def completion(text: str = "Hello.") -> dict[str, Any]:
    return {
        "id": "chatcmpl-edge",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi there."}]}
