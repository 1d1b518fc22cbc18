"""Requests the proxy must refuse itself: 400 naming the field, 413 over the size limit.
None of them may reach the upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.upstream.relay.conftest import (
    MODEL,
    UPSTREAM,
    assert_openai_error,
    completion,
    make_settings,
    serve,
)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _user(**message: Any) -> bytes:
    return _json({"model": MODEL, "messages": [{"role": "user", **message}]})


INVALID = [
    pytest.param(b'{"model": "gpt-4o", "messages": [', None, id="invalid-json"),
    pytest.param(b'{"model": "gpt-4o\xff\xfe", "messages": []}', None, id="invalid-utf8"),
    pytest.param(_json([{"role": "user", "content": "hi"}]), None, id="body-is-a-list"),
    pytest.param(_json("hello"), None, id="body-is-a-string"),
    pytest.param(_json({"messages": [{"role": "user", "content": "hi"}]}), "model", id="no-model"),
    pytest.param(_json({"model": MODEL}), "messages", id="no-messages"),
    pytest.param(_json({"model": MODEL, "messages": "hi"}), "messages", id="messages-not-list"),
    pytest.param(
        _json({"model": MODEL, "messages": ["hi"]}), "messages[0]", id="message-not-object"
    ),
    pytest.param(
        _json(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": "a"}, {"role": "wizard", "content": "b"}],
            }
        ),
        "messages[1].role",
        id="unknown-role",
    ),
    pytest.param(_user(content=42), "messages[0].content", id="content-number"),
    pytest.param(_user(content={"text": "hi"}), "messages[0].content", id="content-object"),
    pytest.param(
        _user(content=[{"type": "hologram", "hologram": {}}]),
        "messages[0].content[0].type",
        id="unknown-part-type",
    ),
    pytest.param(
        _json(
            {
                "model": MODEL,
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {}}]}
                ],
            }
        ),
        "messages[0].content[0].type",
        id="image-in-system-message",
    ),
    pytest.param(
        _json({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": {}}),
        "tools",
        id="tools-not-list",
    ),
    pytest.param(
        _json(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"parameters": {}}}],
            }
        ),
        "tools[0].function.name",
        id="tool-without-name",
    ),
    # The memory path read these as asking for usage (and answered 200) where the upstream,
    # which the short path forwards them to, refuses them (the review).
    *(pytest.param(
        _json({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
               "stream": True, "stream_options": options}),
        param, id=f"stream-options-{name}")
      for name, options, param in (
          ("string", "yes", "stream_options"), ("list", [1], "stream_options"),
          ("usage-string", {"include_usage": "yes"}, "stream_options.include_usage"))),
]


@pytest.mark.parametrize(("body", "param"), INVALID)
@pytest.mark.parametrize("mode", ["off", "strict"])
async def test_invalid_request_is_400_naming_the_field(
    body: bytes, param: str | None, mode: str
) -> None:
    async with serve() as proxy:
        proxy.router.post(f"{UPSTREAM}/chat/completions").mock(
            return_value=httpx.Response(200, json=completion())
        )
        response = await proxy.http.post(
            "/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json", "x-vm-mode": mode},
        )
        assert response.status_code == 400, response.text
        error = assert_openai_error(response.json())
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param
        assert proxy.upstream_requests() == []


LIMIT = 1024


async def _pieces(count: int, size: int, consumed: list[int]) -> AsyncIterator[bytes]:
    yield b'{"model": "' + MODEL.encode() + b'", "input": "'
    for _ in range(count):
        consumed.append(size)
        yield b"x" * size
    yield b'"}'


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_body_over_the_limit_is_413_without_reading_the_rest(
    path: str, declared: bool
) -> None:
    count, size = 200, 512
    consumed: list[int] = []
    total = len(b'{"model": "' + MODEL.encode() + b'", "input": "') + count * size + 2
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(total)
    async with serve(make_settings(server={"max_body_bytes": LIMIT})) as proxy:
        proxy.router.route().mock(return_value=httpx.Response(200, json=completion()))
        response = await proxy.http.post(
            path, content=_pieces(count, size, consumed), headers=headers
        )
        assert response.status_code == 413
        error = assert_openai_error(response.json())
        assert str(LIMIT) in error["message"]
        assert proxy.upstream_requests() == []
        # Refused at the first bytes past the limit, not after reading all 100 KiB.
        read = sum(consumed)
        assert read <= (0 if declared else LIMIT + size), read


async def test_body_at_the_limit_is_accepted() -> None:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    limit = len(body)
    async with serve(make_settings(server={"max_body_bytes": limit})) as proxy:
        proxy.router.post(f"{UPSTREAM}/chat/completions").mock(
            return_value=httpx.Response(200, json=completion())
        )
        response = await proxy.http.post(
            "/v1/chat/completions",
            content=body.encode(),
            headers={"content-type": "application/json", "x-vm-mode": "off"},
        )
        assert response.status_code == 200
        assert len(proxy.upstream_requests()) == 1
