"""Upstream headers reach the client on the memory path too (issue 13, item 7): request
ids, rate limits, processing time, and `retry-after` on a relayed 429/503; and the access
line's `upstream_ms` is filled for memory-path requests."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import openai
import pytest

from tests.http.conftest import completion, edge, settings_with
from tests.http.test_logs import lines, log_stream  # noqa: F401
from tests.support.fake_upstream import chunk

MEMORY = settings_with(vm={"mode": "strict", "activate_above": 0, "context_budget": 3000})
INFO = {
    "x-request-id": "req_upstream_42",
    "openai-processing-ms": "321",
    "x-ratelimit-remaining-requests": "99",
    "x-ratelimit-reset-tokens": "12ms",
}


def answering(request: httpx.Request) -> httpx.Response:
    if json.loads(request.content).get("stream"):
        events = b"".join(
            b"data: " + json.dumps(e).encode() + b"\n\n"
            for e in (chunk({"role": "assistant", "content": "Hi."}), chunk({}, "stop"))
        )
        return httpx.Response(200, stream=httpx.ByteStream(events + b"data: [DONE]\n\n"),
                              headers={"content-type": "text/event-stream", **INFO})
    return httpx.Response(200, json=completion("Hi."), headers=INFO)


def sdk(proxy: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://proxy/v1", api_key="sk-test",
                              http_client=proxy.http, max_retries=0)


MESSAGES: list[Any] = [{"role": "user", "content": "Hello?"}]


@pytest.mark.parametrize("stream", [False, True])
async def test_request_ids_and_rate_limits_reach_the_client(stream: bool) -> None:
    async with edge(answering, MEMORY) as proxy:
        raw = await sdk(proxy).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=stream)
        for name, value in INFO.items():
            assert raw.headers.get(name) == value
        assert raw.headers.get("x-vm-session")
        if not stream:
            assert raw.parse()._request_id == "req_upstream_42"


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("stream", [False, True])
async def test_retry_after_reaches_the_client(status: int, stream: bool) -> None:
    def refusing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {
            "message": "Slow down.", "type": "rate_limit_error", "param": None,
            "code": "rate_limit_exceeded"}}, headers={"retry-after": "4", **INFO})

    async with edge(refusing, MEMORY) as proxy:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk(proxy).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=stream)
    assert caught.value.status_code == status
    assert caught.value.response.headers.get("retry-after") == "4"
    assert caught.value.request_id == "req_upstream_42"


async def test_the_access_line_has_upstream_ms(log_stream: io.BytesIO) -> None:  # noqa: F811
    async with edge(answering, MEMORY) as proxy:
        await sdk(proxy).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    access = [line for line in lines(log_stream) if line.get("route") == "/v1/chat/completions"]
    assert access and isinstance(access[-1]["upstream_ms"], float)
    assert access[-1]["upstream_request_id"] == "req_upstream_42"
