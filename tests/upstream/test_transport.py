"""The aiohttp transport and `Upstream`, against a real server on loopback."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest

from proxy.config import load_settings
from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.upstream.client import Upstream
from proxy.upstream.transport import AiohttpReply, AiohttpTransport
from tests.support.fake_upstream import FakeUpstream, RecordedRequest, Reply, completion
from tests.support.proxy_process import free_port

TIMEOUT = AiohttpTransport.timeout_for(httpx.Timeout(5.0).as_dict())


async def send(
    transport: AiohttpTransport,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> AiohttpReply:
    pairs = [(n.encode(), v.encode()) for n, v in (headers or {}).items()]
    return await transport.open(method, url, pairs, content, TIMEOUT)


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    transport = AiohttpTransport(max_connections=4)
    yield transport
    await transport.aclose()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


async def test_a_compressed_body_stays_compressed_with_its_header(
    transport: AiohttpTransport,
) -> None:
    body = orjson.dumps(completion("zipped"))
    packed = gzip.compress(body)

    def handler(_: RecordedRequest) -> Reply:
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        return Reply(200, headers, packed)

    with FakeUpstream(handler) as fake:
        reply = await send(
            transport,
            "POST",
            f"{fake.url}/chat/completions",
            headers={"accept-encoding": "gzip"},
            content=b"{}",
        )
        raw = b"".join([chunk async for chunk in reply.aiter_raw()])
    assert raw == packed
    assert {n.lower(): v for n, v in reply.raw_headers}[b"content-encoding"] == b"gzip"


async def test_the_body_is_decoded_where_the_proxy_reads_it(
    transport: AiohttpTransport,
) -> None:
    body = orjson.dumps(completion("zipped"))

    def handler(_: RecordedRequest) -> Reply:
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        return Reply(200, headers, gzip.compress(body))

    with FakeUpstream(handler) as fake:
        whole = await send(transport, "POST", f"{fake.url}/chat/completions", content=b"{}")
        decoded = await whole.read_decoded()
        streamed = await send(transport, "POST", f"{fake.url}/chat/completions", content=b"{}")
        pieces = [chunk async for chunk in streamed.aiter_decoded()]
    assert orjson.loads(decoded) == completion("zipped")
    assert orjson.loads(b"".join(pieces)) == completion("zipped")


async def test_only_the_callers_headers_are_sent(
    transport: AiohttpTransport, upstream: FakeUpstream
) -> None:
    reply = await send(
        transport,
        "POST",
        f"{upstream.url}/chat/completions",
        headers={"authorization": "Bearer sk-1", "content-type": "application/json"},
        content=b'{"model": "m", "messages": [], "stream": false}',
    )
    await reply.read()
    seen = upstream.requests[0].headers
    assert seen["authorization"] == "Bearer sk-1"
    assert seen["host"] == f"127.0.0.1:{upstream.port}"
    assert seen["content-length"] == "47"
    # No compression asked for on the client's behalf, no client identity invented.
    assert "accept-encoding" not in seen
    assert "user-agent" not in seen


async def test_chunks_are_yielded_as_they_arrive(transport: AiohttpTransport) -> None:
    gate = threading.Event()
    events = [b"data: one\n\n", b"data: two\n\n"]

    def handler(_: RecordedRequest) -> Reply:
        return Reply(200, {"content-type": "text/event-stream"}, chunks=events, gates={1: gate})

    with FakeUpstream(handler) as fake:
        reply = await send(transport, "POST", f"{fake.url}/chat/completions", content=b"{}")
        chunks = reply.aiter_raw()
        first = await asyncio.wait_for(chunks.__anext__(), timeout=5)
        assert first == b"data: one\n\n"  # while the upstream still holds the second back
        gate.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert rest == b"data: two\n\n"


async def test_connections_are_reused(transport: AiohttpTransport, upstream: FakeUpstream) -> None:
    for _ in range(3):
        reply = await send(transport, "GET", f"{upstream.url}/models")
        await reply.read()
        await reply.aclose()
    assert len({seen.peer for seen in upstream.requests}) == 1


async def test_a_response_closed_early_does_not_poison_the_pool(
    transport: AiohttpTransport,
) -> None:
    def handler(seen: RecordedRequest) -> Reply:
        if seen.path.endswith("/long"):
            return Reply(200, {"content-type": "text/plain"}, chunks=[b"a" * 1000] * 50)
        return Reply.json({"ok": True})

    with FakeUpstream(handler) as fake:
        reply = await send(transport, "GET", f"{fake.url}/long")
        await reply.aiter_raw().__anext__()
        await reply.aclose()  # abandoned mid-body
        again = await send(transport, "GET", f"{fake.url}/short")
        body = await again.read()
    assert orjson.loads(body) == {"ok": True}


async def test_upstream_cookies_are_never_sent_back(transport: AiohttpTransport) -> None:
    def handler(_: RecordedRequest) -> Reply:
        return Reply.json({}, **{"set-cookie": "__cf_bm=tenant-a; Path=/"})

    with FakeUpstream(handler) as fake:
        for _ in range(2):
            reply = await send(transport, "GET", f"{fake.url}/models")
            await reply.read()
        assert "cookie" not in fake.requests[1].headers


async def test_unreachable_is_connect_error(transport: AiohttpTransport) -> None:
    with pytest.raises(httpx.ConnectError):
        await send(transport, "GET", f"http://127.0.0.1:{free_port()}/v1")


async def test_no_answer_in_time_is_read_timeout(transport: AiohttpTransport) -> None:
    def handler(_: RecordedRequest) -> Reply:
        return Reply(200, {"content-type": "application/json"}, b"{}", headers_delay_s=1.0)

    quick = AiohttpTransport.timeout_for(httpx.Timeout(0.2, connect=5.0).as_dict())
    with FakeUpstream(handler) as fake:
        with pytest.raises(httpx.ReadTimeout):
            await transport.open("GET", f"{fake.url}/models", [], None, quick)


async def test_a_body_cut_short_is_a_read_error(transport: AiohttpTransport) -> None:
    def handler(_: RecordedRequest) -> Reply:
        events = [b"data: one\n\n", b"data: two\n\n", b"data: [DONE]\n\n"]
        return Reply(200, {"content-type": "text/event-stream"}, chunks=events, abort_after=1)

    with FakeUpstream(handler) as fake:
        reply = await send(transport, "GET", f"{fake.url}/stream")
        with pytest.raises(httpx.ReadError):
            async for _ in reply.aiter_raw():
                pass


def upstream_settings(url: str, **values: object) -> Upstream:
    settings = load_settings(environ={}, overrides={"upstream": {"base_url": url, **values}})
    return Upstream(settings.upstream)


async def test_post_json_sends_json_and_reads_a_compressed_reply() -> None:
    def handler(seen: RecordedRequest) -> Reply:
        body = gzip.compress(orjson.dumps(completion(seen.json()["messages"][0]["content"])))
        return Reply(200, {"content-type": "application/json", "content-encoding": "gzip"}, body)

    with FakeUpstream(handler) as fake:
        upstream = upstream_settings(fake.url)
        try:
            response = await upstream.post_json(
                "/chat/completions",
                {"model": "m", "messages": [{"role": "user", "content": "echo me"}]},
                {"Authorization": "Bearer sk-1", "X-VM-Session": "s", "Content-Type": "text/plain"},
            )
        finally:
            await upstream.aclose()
    assert response.status_code == 200
    assert orjson.loads(response.content) == completion("echo me")
    seen = fake.requests[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["authorization"] == "Bearer sk-1"
    assert "x-vm-session" not in seen.headers


async def test_stream_yields_the_open_response_and_closes_it() -> None:
    def handler(_: RecordedRequest) -> Reply:
        return Reply.sse([{"n": 1}, {"n": 2}])

    with FakeUpstream(handler) as fake:
        upstream = upstream_settings(fake.url)
        try:
            async with upstream.stream("/chat/completions", {"stream": True}, {}) as reply:
                body = b"".join([chunk async for chunk in reply.aiter_decoded()])
            assert reply.is_closed
        finally:
            await upstream.aclose()
    assert body == b'data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n'


async def test_post_json_to_nowhere_is_502() -> None:
    upstream = upstream_settings(f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(UpstreamError) as caught:
            await upstream.post_json("/chat/completions", {}, {})
    finally:
        await upstream.aclose()
    assert caught.value.status_code == 502


async def test_post_json_past_the_timeout_is_504() -> None:
    def handler(_: RecordedRequest) -> Reply:
        return Reply(200, {"content-type": "application/json"}, b"{}", headers_delay_s=1.0)

    with FakeUpstream(handler) as fake:
        upstream = upstream_settings(fake.url, timeout_s=0.2)
        try:
            with pytest.raises(UpstreamTimeout) as caught:
                await upstream.post_json("/chat/completions", {}, {})
        finally:
            await upstream.aclose()
    assert caught.value.status_code == 504


async def test_open_reads_a_success_body_raw_and_an_error_body_decoded() -> None:
    ok = gzip.compress(orjson.dumps(completion("zipped")))
    error = {"error": {"message": "slow down", "type": "rate_limit", "param": None, "code": None}}

    def handler(seen: RecordedRequest) -> Reply:
        body = ok if seen.path.endswith("/ok") else gzip.compress(orjson.dumps(error))
        status = 200 if seen.path.endswith("/ok") else 429
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        return Reply(status, {**headers, "x-request-id": "req_1"}, body)

    with FakeUpstream(handler) as fake:
        upstream = upstream_settings(fake.url)
        try:
            reply = await upstream.open("GET", "/ok", query="a=1", headers=[(b"x-k", b"v")])
            try:
                assert reply.status_code == 200
                assert (b"x-request-id", b"req_1") in [(n.lower(), v) for n, v in reply.raw_headers]
                assert await reply.read() == ok
            finally:
                await reply.aclose()
            reply = await upstream.open("GET", "/limited", headers=[])
            try:
                assert reply.status_code == 429
                assert orjson.loads(await reply.read_decoded()) == error
            finally:
                await reply.aclose()
        finally:
            await upstream.aclose()
    assert fake.requests[0].query == "a=1"
    assert fake.requests[0].headers["x-k"] == "v"


async def test_open_streams_and_maps_a_broken_body_to_a_read_error() -> None:
    def handler(_: RecordedRequest) -> Reply:
        events = [b"data: one\n\n", b"data: two\n\n", b"data: [DONE]\n\n"]
        return Reply(200, {"content-type": "text/event-stream"}, chunks=events, abort_after=1)

    with FakeUpstream(handler) as fake:
        upstream = upstream_settings(fake.url)
        try:
            reply = await upstream.open("POST", "/chat/completions", headers=[], content=b"{}")
            seen = []
            with pytest.raises(httpx.ReadError):
                async for chunk in reply.aiter_raw():
                    seen.append(chunk)
            await reply.aclose()
        finally:
            await upstream.aclose()
    assert seen == [b"data: one\n\n"]


async def test_open_to_nowhere_is_502() -> None:
    upstream = upstream_settings(f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(UpstreamError) as caught:
            await upstream.open("GET", "/models", headers=[])
    finally:
        await upstream.aclose()
    assert caught.value.status_code == 502


async def test_a_base_urls_own_query_goes_on_every_request() -> None:
    """Azure's deployments take `?api-version=...` on the base URL: it goes after the
    path, before the request's own query (it used to land before the path)."""
    with FakeUpstream() as fake:
        settings = load_settings(environ={}, overrides={"upstream": {
            "base_url": f"{fake.url}/openai/deployments/gpt?api-version=2024-10-21"}})
        upstream = Upstream(settings.upstream)
        try:
            assert str(upstream.url("/chat/completions")) == (
                f"{fake.url}/openai/deployments/gpt/chat/completions?api-version=2024-10-21")
            assert str(upstream.url("/files", "limit=2")) == (
                f"{fake.url}/openai/deployments/gpt/files?api-version=2024-10-21&limit=2")
            reply = await upstream.open("POST", "/chat/completions", headers=[],
                                        content=b"{}")
            await reply.aclose()
        finally:
            await upstream.aclose()
        (seen,) = fake.requests
    assert seen.path == "/v1/openai/deployments/gpt/chat/completions"
    assert seen.query == "api-version=2024-10-21"


@pytest.mark.parametrize("given,kept", [
    ("HTTP://Example.test/v1/", "http://Example.test/v1"),
    ("https://example.test:8443/v1?api-version=1", "https://example.test:8443/v1?api-version=1"),
])
def test_an_upstream_url_is_kept_as_given_but_its_trailing_slash(given: str, kept: str) -> None:
    settings = load_settings(environ={}, overrides={"upstream": {"base_url": given}})
    assert settings.upstream.base_url == kept


def test_a_clients_own_parameter_wins_over_the_base_urls_and_errors_hide_the_query() -> None:
    from proxy.upstream.client import error_for_transport_failure

    settings = load_settings(environ={}, overrides={"upstream": {
        "base_url": "http://u.test/openai/deployments/gpt?api-version=2024-10-21&key=s3cret"}})
    upstream = Upstream(settings.upstream)
    assert str(upstream.url("/chat/completions", "api-version=2025-01-01")) == (
        "http://u.test/openai/deployments/gpt/chat/completions?key=s3cret"
        "&api-version=2025-01-01")
    assert str(upstream.url("/files", "API%2DVersion=3")) == (
        "http://u.test/openai/deployments/gpt/files?key=s3cret&API%2DVersion=3")
    error = error_for_transport_failure(httpx.ConnectError("refused"), upstream.base_url)
    assert "s3cret" not in error.message and "http://u.test/openai/deployments/gpt" in error.message


def test_the_embeddings_url_keeps_the_base_urls_query() -> None:
    from proxy.config import resolve_embeddings
    from proxy.embeddings.remote import RemoteEmbedder
    from proxy.metrics import Metrics

    settings = resolve_embeddings(load_settings(environ={}, overrides={
        "upstream": {"base_url": "http://u.test/openai?api-version=2024-10-21"},
        "embeddings": {"provider": "upstream"}}))
    embedder = RemoteEmbedder(settings.embeddings, Metrics())
    assert embedder._url == "http://u.test/openai/embeddings?api-version=2024-10-21"
