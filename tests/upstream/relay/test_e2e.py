"""`vm-proxy serve` in its own process on a loopback port, a fake upstream on another, the
openai SDK over real sockets: streams are relayed as they arrive, and a client that goes
away mid-stream makes the proxy drop its upstream request."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from aiohttp import web

from tests.support.fake_upstream import (
    FakeUpstream,
    RecordedRequest,
    Reply,
    chunk,
    default_handler,
    text_stream,
)
from tests.support.proxy_process import ProxyProcess, run_proxy

pytestmark = pytest.mark.e2e

DRIP_MODEL = "drip-model"
DRIP_S = 0.02
DRIP_MAX = 400  # 8 s of chunks: far longer than the test waits for the drop


class DrippingUpstream(FakeUpstream):
    """A FakeUpstream that, for `DRIP_MODEL`, streams a chunk every DRIP_S until the
    connection breaks, and records whether it broke (`dropped`) or ran out (`finished`)."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = threading.Event()
        self.finished = threading.Event()
        self.written = 0

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path != "/v1/chat/completions" or orjson.loads(body).get("model") != DRIP_MODEL:
            return await super()._serve(request)
        self.requests.append(
            RecordedRequest(request.method, request.path, request.query_string, {}, body)
        )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            for index in range(DRIP_MAX):
                event = chunk({"content": f"tick {index} "}, model=DRIP_MODEL)
                await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
                self.written += 1
                transport = request.transport
                if transport is None or transport.is_closing():
                    self.dropped.set()
                    return response
                await asyncio.sleep(DRIP_S)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            self.finished.set()
        except (ConnectionError, asyncio.CancelledError):
            self.dropped.set()
            raise
        return response


class Gate(threading.Event):
    """A gate that remembers whether it was opened or its waiter gave up on it."""

    def __init__(self) -> None:
        super().__init__()
        self.timed_out = False

    def wait(self, timeout: float | None = None) -> bool:
        opened = super().wait(timeout)
        self.timed_out = not opened
        return opened


@pytest.fixture(scope="module")
def upstream() -> Iterator[DrippingUpstream]:
    with DrippingUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def proxy(upstream: DrippingUpstream) -> Iterator[ProxyProcess]:
    with run_proxy(upstream=upstream.url) as running:
        yield running


@pytest.fixture
def client(proxy: ProxyProcess, upstream: DrippingUpstream) -> Iterator[openai.OpenAI]:
    upstream.handler = default_handler
    with httpx.Client(trust_env=False, timeout=20) as http:
        yield openai.OpenAI(
            base_url=proxy.base_url, api_key="sk-e2e", http_client=http, max_retries=0
        )
    upstream.handler = default_handler


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}], **extra}


def test_non_streaming_over_a_socket(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(**_chat())
    assert result.choices[0].message.content == "Hello from the fake upstream."


@pytest.mark.parametrize("mode", [{"x-vm-mode": "off"}, {}], ids=["vm-off", "vm-default"])
def test_stream_chunks_arrive_before_the_upstream_has_finished(
    client: openai.OpenAI, upstream: DrippingUpstream, mode: dict[str, str]
) -> None:
    pieces = ["The", " first", " words", " arrive", " early."]
    events = text_stream(pieces)
    gate = Gate()
    # The last event and [DONE] are held back until the client has seen the first words.
    held = len(events) - 1
    upstream.handler = lambda request: Reply.sse(events, gates={held: gate})
    stream = client.chat.completions.create(**_chat(stream=True), extra_headers=mode)
    received: list[str] = []
    opened_at: int | None = None
    for item in stream:
        if item.choices and item.choices[0].delta.content:
            received.append(item.choices[0].delta.content)
        if opened_at is None and len(received) == len(pieces):
            opened_at = len(received)
            gate.set()  # only now may the upstream finish
    assert opened_at == len(pieces)
    assert gate.is_set() and not gate.timed_out, "the proxy held the stream until the end"
    assert "".join(received) == "".join(pieces)


def _read_three_then_leave(stream: Any) -> None:
    """Read three content chunks, then close: the SDK drops the connection, body unread."""
    seen = 0
    for item in stream:
        if item.choices and item.choices[0].delta.content:
            seen += 1
        if seen == 3:
            break
    stream.close()


def test_client_disconnect_mid_stream_closes_the_upstream_request(
    client: openai.OpenAI, upstream: DrippingUpstream
) -> None:
    _read_three_then_leave(client.chat.completions.create(
        model=DRIP_MODEL, messages=[{"role": "user", "content": "count"}], stream=True
    ))
    left_at = time.monotonic()
    assert upstream.dropped.wait(5), (
        f"the upstream kept streaming after the client left ({upstream.written} chunks)"
    )
    assert not upstream.finished.is_set()
    assert time.monotonic() - left_at < 5
    assert upstream.written < DRIP_MAX


def test_other_routes_over_a_socket(
    proxy: ProxyProcess, upstream: DrippingUpstream, client: openai.OpenAI
) -> None:
    assert [m.id for m in client.models.list()] == ["fake-model"]
    upstream.handler = lambda request: Reply(204, {"x-request-id": "req_gone"})
    with httpx.Client(trust_env=False, timeout=10) as http:
        gone = http.delete(f"{proxy.base_url}/threads/thread_1?force=1")
    assert gone.status_code == 204
    assert gone.content == b""
    assert gone.headers["x-request-id"] == "req_gone"
    last = upstream.requests[-1]
    assert (last.method, last.path, last.query) == ("DELETE", "/v1/threads/thread_1", "force=1")


@pytest.fixture(scope="module")
def vm_proxy(upstream: DrippingUpstream) -> Iterator[ProxyProcess]:
    """A proxy that runs the fault loop for every request (activate_above = 0)."""
    with run_proxy(upstream=upstream.url, env={"VM_PROXY_VM__ACTIVATE_ABOVE": "0"}) as running:
        yield running


def test_client_disconnect_mid_stream_of_the_fault_loop_closes_the_upstream_request(
    vm_proxy: ProxyProcess, upstream: DrippingUpstream
) -> None:
    upstream.handler = default_handler
    with httpx.Client(trust_env=False, timeout=20) as http:
        client = openai.OpenAI(
            base_url=vm_proxy.base_url, api_key="sk-e2e", http_client=http, max_retries=0
        )
        upstream.dropped.clear()
        raw = client.chat.completions.with_raw_response.create(
            model=DRIP_MODEL, messages=[{"role": "user", "content": "count"}], stream=True
        )
        _read_three_then_leave(raw.parse())
        left_at = time.monotonic()
        assert upstream.dropped.wait(5), (
            f"the upstream kept streaming after the client left ({upstream.written} chunks)"
        )
        assert time.monotonic() - left_at < 5
    # The fault loop answered (its prompt carries the VM rules), not the plain relay.
    assert b"<VM:" in upstream.requests[-1].body
