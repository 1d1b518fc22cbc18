"""Upstream errors: relayed with their status (and body, when already in OpenAI's shape),
normalised to that shape when the upstream used another, and a stream that breaks after it
started ends with an error event the SDK raises on."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.upstream.relay.conftest import (
    UPSTREAM,
    assert_openai_error,
    chunk,
    error_body,
    serve,
    sse_bytes,
    sse_response,
    user_chat,
)

CHAT = f"{UPSTREAM}/chat/completions"

SDK_ERRORS = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    404: openai.NotFoundError,
    429: openai.RateLimitError,
    500: openai.InternalServerError,
}
OPENAI_ERRORS = {
    400: error_body(
        "Invalid value for 'temperature'.", "invalid_request_error", "invalid_value", "temperature"
    ),
    401: error_body(
        "Incorrect API key provided: sk-client.", "invalid_request_error", "invalid_api_key"
    ),
    404: error_body(
        "The model `gpt-9` does not exist.", "invalid_request_error", "model_not_found"
    ),
    429: error_body("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: error_body("The server had an error while processing your request.", "server_error"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("status", sorted(OPENAI_ERRORS))
async def test_upstream_error_is_relayed_before_a_stream(
    status: int, stream: bool, mode_headers: dict[str, str]
) -> None:
    # Pretty-printed like OpenAI's own error bodies: relayed byte for byte.
    sent = json.dumps(OPENAI_ERRORS[status], indent=2).encode()
    async with serve(headers=mode_headers) as proxy:
        proxy.router.post(CHAT).mock(
            return_value=httpx.Response(
                status, content=sent, headers={"content-type": "application/json"}
            )
        )
        raw = await proxy.http.post(
            "/v1/chat/completions", json=user_chat(stream=stream), headers=mode_headers
        )
        assert raw.status_code == status
        assert raw.content == sent

        with pytest.raises(SDK_ERRORS[status]) as caught:
            await proxy.client.chat.completions.create(**user_chat(stream=stream))
        assert caught.value.status_code == status
        assert caught.value.body == OPENAI_ERRORS[status]["error"]


NOT_OPENAI_SHAPED = [
    pytest.param(
        401,
        b'{"error":{"message":"No cookie auth credentials found","code":401}}',
        "application/json",
        "No cookie auth credentials found",
        "401",
        id="openrouter-numeric-code",
    ),
    pytest.param(
        404,
        b'{"error":{"code":"404","message": "Resource not found"}}',
        "application/json",
        "Resource not found",
        "404",
        id="azure-string-code-no-type",
    ),
    pytest.param(
        429,
        b'{"error":{"code":429,"message":"Provider returned error",'
        b'"metadata":{"provider_name":"x","raw":"busy"}},"user_id":"u1"}',
        "application/json",
        "Provider returned error",
        "429",
        id="openrouter-429-metadata",
    ),
    pytest.param(
        502,
        b"<html><body>502 Bad Gateway</body></html>",
        "text/html",
        "502 Bad Gateway",
        None,
        id="html",
    ),
    pytest.param(
        500, b"upstream exploded", "text/plain", "upstream exploded", None, id="plain-text"
    ),
    pytest.param(503, b"", "text/plain", "", None, id="empty"),
]


@pytest.mark.parametrize(("status", "body", "content_type", "message", "code"), NOT_OPENAI_SHAPED)
async def test_upstream_error_in_another_shape_is_normalised(
    status: int,
    body: bytes,
    content_type: str,
    message: str,
    code: str | None,
    mode_headers: dict[str, str],
) -> None:
    async with serve(headers=mode_headers) as proxy:
        proxy.router.post(CHAT).mock(
            return_value=httpx.Response(
                status, content=body, headers={"content-type": content_type}
            )
        )
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat(), headers=mode_headers)
        assert raw.status_code == status
        assert raw.headers["content-type"].startswith("application/json")
        error = assert_openai_error(raw.json())
        assert message in error["message"]
        assert error["code"] == code

        with pytest.raises(openai.APIStatusError) as caught:
            await proxy.client.chat.completions.create(**user_chat())
        assert caught.value.status_code == status
        assert caught.value.body == error


async def test_error_during_a_stream_reaches_the_sdk_as_api_error(
    mode_headers: dict[str, str],
) -> None:
    head = sse_bytes(
        [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hal"})], done=False
    )
    async with serve(headers=mode_headers) as proxy:
        proxy.router.post(CHAT).mock(
            side_effect=lambda request: sse_response(
                head, fail_with=httpx.ReadError("connection reset by peer")
            )
        )
        raw = await proxy.http.post(
            "/v1/chat/completions", json=user_chat(stream=True), headers=mode_headers
        )
        assert raw.status_code == 200
        assert raw.content.startswith(b"".join(head))
        tail = raw.content[len(b"".join(head)) :]
        assert tail.startswith(b"data: ") and tail.endswith(b"\n\n")
        assert_openai_error(json.loads(tail[len(b"data: ") :]))
        assert b"[DONE]" not in raw.content

        stream = await proxy.client.chat.completions.create(**user_chat(stream=True))
        seen: list[str] = []
        with pytest.raises(openai.APIError):
            async for item in stream:
                seen.append(item.choices[0].delta.content or "")
        assert "".join(seen) == "Hal"


async def test_an_error_event_from_the_upstream_is_relayed_and_raised() -> None:
    wire = [
        *sse_bytes([chunk({"role": "assistant", "content": ""})], done=False),
        b'event: error\ndata: {"error":{"message":"tool_use_failed","type":"invalid_request_error",'
        b'"code":"tool_use_failed"}}\n\n',
    ]
    async with serve() as proxy:
        proxy.router.post(CHAT).mock(side_effect=lambda request: sse_response(wire))
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat(stream=True))
        assert raw.content == b"".join(wire)
        stream = await proxy.client.chat.completions.create(**user_chat(stream=True))
        with pytest.raises(openai.APIError, match="tool_use_failed"):
            async for _ in stream:
                pass


RATE_LIMIT_HEADERS = {
    "retry-after": "7",
    "retry-after-ms": "6500",
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "7s",
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-tokens": "29000",
    "x-ratelimit-reset-tokens": "120ms",
    "x-request-id": "req_rate_1",
}


@pytest.mark.parametrize(
    "body",
    [json.dumps(OPENAI_ERRORS[429]).encode(), b'{"error":{"code":429,"message":"slow down"}}'],
    ids=["openai-shaped", "normalised"],
)
async def test_429_keeps_retry_after_and_rate_limit_headers(
    body: bytes, mode_headers: dict[str, str]
) -> None:
    async with serve(headers=mode_headers) as proxy:
        proxy.router.post(CHAT).mock(
            return_value=httpx.Response(
                429,
                content=body,
                headers={"content-type": "application/json", **RATE_LIMIT_HEADERS},
            )
        )
        raw = await proxy.http.post("/v1/chat/completions", json=user_chat(), headers=mode_headers)
        assert raw.status_code == 429
        for name, value in RATE_LIMIT_HEADERS.items():
            assert raw.headers.get(name) == value, name

        with pytest.raises(openai.RateLimitError) as caught:
            await proxy.client.chat.completions.create(**user_chat())
        assert caught.value.response.headers["retry-after"] == "7"
        assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"
