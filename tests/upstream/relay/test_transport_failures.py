"""Upstream unreachable → 502, upstream too slow → 504, through the real aiohttp transport
(the app built without an injected transport) against loopback sockets."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import openai
import pytest
from starlette.applications import Starlette

from proxy.config import Settings
from proxy.http.app import create_app
from tests.support.fake_upstream import FakeUpstream, RecordedRequest, Reply, chunk, default_handler
from tests.support.proxy_process import free_port
from tests.upstream.relay.conftest import VM_OFF, assert_openai_error, make_settings, user_chat


@asynccontextmanager
async def real_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app: Starlette = create_app(settings)
    async with asyncio.timeout(20), app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy"
        ) as http:
            yield http


REQUESTS = [
    pytest.param("POST", "/v1/chat/completions", user_chat(), VM_OFF, id="chat-vm-off"),
    pytest.param("POST", "/v1/chat/completions", user_chat(), {}, id="chat-vm-default"),
    pytest.param("POST", "/v1/chat/completions", user_chat(stream=True), VM_OFF, id="stream"),
    pytest.param("GET", "/v1/models", None, {}, id="models"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), REQUESTS)
async def test_unreachable_upstream_is_502(
    method: str, path: str, body: dict[str, object] | None, headers: dict[str, str]
) -> None:
    closed = free_port()  # bound then released: nothing listens there
    settings = make_settings(upstream={"base_url": f"http://127.0.0.1:{closed}/v1"})
    async with real_app(settings) as http:
        started = time.monotonic()
        response = await http.request(method, path, json=body, headers=headers)
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("application/json")
        error = assert_openai_error(response.json())
        assert str(closed) in error["message"]
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(("method", "path", "body", "headers"), REQUESTS)
async def test_slow_upstream_is_504(
    method: str, path: str, body: dict[str, object] | None, headers: dict[str, str]
) -> None:
    release = threading.Event()

    def stalls(request: RecordedRequest) -> Reply:
        release.wait(5)  # far past upstream.timeout_s; released when the test is done
        return default_handler(request)

    with FakeUpstream(stalls) as upstream:
        settings = make_settings(upstream={"base_url": upstream.url, "timeout_s": 0.3})
        try:
            async with real_app(settings) as http:
                started = time.monotonic()
                response = await http.request(method, path, json=body, headers=headers)
                elapsed = time.monotonic() - started
        finally:
            release.set()
        assert response.status_code == 504
        assert_openai_error(response.json())
        assert 0.25 <= elapsed < 3
        assert len(upstream.requests) == 1


async def test_stream_that_stalls_after_it_started_ends_with_an_error_event() -> None:
    gate = threading.Event()

    def stalls_midway(request: RecordedRequest) -> Reply:
        events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"})]
        return Reply.sse(events, gates={2: gate})  # chunk 2 ([DONE]) waits on the gate

    with FakeUpstream(stalls_midway) as upstream:
        settings = make_settings(upstream={"base_url": upstream.url, "timeout_s": 0.3})
        try:
            async with real_app(settings) as http:
                client = openai.AsyncOpenAI(
                    base_url="http://proxy/v1", api_key="sk-x", http_client=http, max_retries=0
                )
                stream = await client.chat.completions.create(
                    **user_chat(stream=True), extra_headers=VM_OFF
                )
                seen: list[str] = []
                with pytest.raises(openai.APIError):
                    async for item in stream:
                        seen.append(item.choices[0].delta.content or "")
        finally:
            gate.set()
        assert "".join(seen) == "Hi"
