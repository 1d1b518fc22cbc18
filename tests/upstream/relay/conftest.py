"""The pass-through in process: the real app (lifespan included) behind the real `openai`
SDK and a raw httpx client, the upstream replaced by a respx router.

    async with serve() as proxy:
        proxy.router.post(f"{UPSTREAM}/chat/completions").mock(side_effect=...)
        await proxy.client.chat.completions.create(...)   # the SDK
        await proxy.http.post("/v1/chat/completions", ...) # raw bytes
        proxy.router.calls                                 # what reached the upstream
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest
import respx
from starlette.applications import Starlette

from proxy.config import Settings, load_settings
from proxy.http.app import create_app
from proxy.store import open_store
from proxy.store.base import PageStore

UPSTREAM = "http://upstream.test/v1"
API_KEY = "sk-client"
MODEL = "gpt-4o-mini"
DEADLINE_S = 20.0
# The two ways a chat completion is passed through unchanged: the VM mode switched off for
# the request, and a conversation short enough to stay under vm.activate_above.
VM_OFF = {"x-vm-mode": "off"}
MODES = {"vm-off": VM_OFF, "vm-default": {}}


def make_settings(**sections: Mapping[str, Any]) -> Settings:
    layers: dict[str, dict[str, Any]] = {
        "store": {"url": "memory://"},
        "upstream": {"base_url": UPSTREAM},
    }
    for name, values in sections.items():
        layers.setdefault(name, {}).update(values)
    return load_settings(environ={}, overrides=layers)


@dataclass
class Proxy:
    app: Starlette
    settings: Settings
    router: respx.Router
    http: httpx.AsyncClient  # raw HTTP to the app, for byte-level checks
    client: openai.AsyncOpenAI

    def upstream_requests(self) -> list[httpx.Request]:
        return [call.request for call in self.router.calls]


@asynccontextmanager
async def serve(
    settings: Settings | None = None,
    *,
    store: PageStore | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[Proxy]:
    """The app with a respx router as its upstream; `headers` go on every SDK request."""
    settings = settings or make_settings()
    own_store = store is None
    store = store or await open_store("memory://")
    router = respx.Router(assert_all_called=False, assert_all_mocked=True)
    app = create_app(
        settings, upstream_transport=httpx.MockTransport(router.async_handler), store=store
    )
    try:
        async with asyncio.timeout(DEADLINE_S), app.router.lifespan_context(app):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://proxy"
            ) as http:
                client = openai.AsyncOpenAI(
                    base_url="http://proxy/v1",
                    api_key=API_KEY,
                    http_client=http,
                    max_retries=0,
                    default_headers=dict(headers or {}),
                )
                yield Proxy(app, settings, router, http, client)
    finally:
        if own_store:
            await store.close()


@pytest.fixture(params=sorted(MODES))
def mode_headers(request: pytest.FixtureRequest) -> dict[str, str]:
    """Run a test once with `X-VM-Mode: off` and once in the default mode (short chats)."""
    return dict(MODES[request.param])


# --- upstream replies ------------------------------------------------------------------


class Chunks(httpx.AsyncByteStream):
    """A response body delivered in the given pieces; optionally breaks after them."""

    def __init__(self, pieces: Iterable[bytes], fail_with: Exception | None = None) -> None:
        self.pieces = list(pieces)
        self.fail_with = fail_with
        self.sent: list[bytes] = []

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.sent.append(piece)
            yield piece
        if self.fail_with is not None:
            raise self.fail_with


def sse_bytes(events: Iterable[dict[str, Any] | bytes], *, done: bool = True) -> list[bytes]:
    out = [e if isinstance(e, bytes) else b"data: " + orjson.dumps(e) + b"\n\n" for e in events]
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def sse_response(
    pieces: Iterable[bytes],
    *,
    fail_with: Exception | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    return httpx.Response(
        200,
        headers={"content-type": "text/event-stream; charset=utf-8", **(headers or {})},
        stream=Chunks(pieces, fail_with),
    )


def completion(
    content: str | None = "Hello there.",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-up1",
        "object": "chat.completion",
        "created": 1_726_000_000,
        "model": model,
        "system_fingerprint": "fp_up",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    }


def chunk(
    delta: dict[str, Any],
    finish: str | None = None,
    *,
    usage: dict[str, int] | None = None,
    choices: bool = True,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-up1",
        "object": "chat.completion.chunk",
        "created": 1_726_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_up",
        "choices": (
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if choices
            else []
        ),
    }
    if usage is not None:
        body["usage"] = usage
    return body


def error_body(
    message: str, error_type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def user_chat(text: str = "Say hello.", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def assert_openai_error(body: Any) -> dict[str, Any]:
    """The body is `{"error": {"message": str, "type": str, "param": str|None, "code": ...}}`."""
    assert isinstance(body, dict) and set(body) >= {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert {"message", "type", "param", "code"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    assert error["param"] is None or isinstance(error["param"], str), error
    assert error["code"] is None or isinstance(error["code"], str), error
    return error
