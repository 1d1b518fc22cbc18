"""Every other `/v1/*` route passes through (method, path, query, body), plus the proxy's
own `GET /healthz` and `GET /metrics`."""

from __future__ import annotations

import json

import httpx
import pytest

from proxy.store import open_store
from proxy.store.base import PageStore
from tests.upstream.relay.conftest import (
    UPSTREAM,
    Chunks,
    assert_openai_error,
    serve,
    sse_response,
)


async def test_models_list_through_the_sdk() -> None:
    models = {
        "object": "list",
        "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "openai"},
            {"id": "o3", "object": "model", "created": 2, "owned_by": "openai"},
        ],
    }
    async with serve() as proxy:
        proxy.router.get(f"{UPSTREAM}/models").mock(return_value=httpx.Response(200, json=models))
        page = await proxy.client.models.list()
        assert [m.id async for m in page] == ["gpt-4o-mini", "o3"]
        (sent,) = proxy.upstream_requests()
        assert sent.method == "GET"


async def test_embeddings_through_the_sdk() -> None:
    reply = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 1.0]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    async with serve() as proxy:
        proxy.router.post(f"{UPSTREAM}/embeddings").mock(
            return_value=httpx.Response(200, json=reply)
        )
        result = await proxy.client.embeddings.create(
            model="text-embedding-3-small", input="hello world", encoding_format="float"
        )
        assert result.data[0].embedding == [0.25, -0.5, 1.0]
        (sent,) = proxy.upstream_requests()
        assert json.loads(sent.content) == {
            "model": "text-embedding-3-small",
            "input": "hello world",
            "encoding_format": "float",
        }


async def test_responses_stream_bytes_are_relayed() -> None:
    wire = [
        b'event: response.created\ndata: {"type":"response.created",'
        b'"response":{"id":"resp_1"}}\n\n',
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        b'"delta":"Hel"}\n\n',
        b": ping\n\n",
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        b'"delta":"lo"}\n\n',
        b'event: response.completed\ndata: {"type":"response.completed","response":'
        b'{"id":"resp_1","status":"completed"}}\n\n',
    ]
    body = {"model": "gpt-4o-mini", "input": "Say hello", "stream": True}
    async with serve() as proxy:
        proxy.router.post(f"{UPSTREAM}/responses").mock(
            side_effect=lambda request: sse_response(wire)
        )
        response = await proxy.http.post("/v1/responses", json=body)
        assert response.status_code == 200
        assert response.content == b"".join(wire)
        (sent,) = proxy.upstream_requests()
        assert json.loads(sent.content) == body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/files?purpose=batch&limit=2&after=file-a%2Fb"),
        ("DELETE", "/v1/files/file-abc123"),
        ("GET", "/v1/models/ft%3Agpt-4o-mini%3Aorg%3A1"),
        ("POST", "/v1/batches/batch_1/cancel"),
        ("PATCH", "/v1/assistants/asst_1?x=1&x=2"),
        ("PUT", "/v1/vector_stores/vs_1"),
        ("OPTIONS", "/v1/models"),
    ],
)
async def test_method_path_and_query_preserved(method: str, path: str) -> None:
    body = b'{"k": 1}' if method in ("POST", "PATCH", "PUT") else None
    async with serve() as proxy:
        proxy.router.route().mock(
            return_value=httpx.Response(
                201, content=b'{"ok":true}', headers={"content-type": "application/json"}
            )
        )
        response = await proxy.http.request(method, path, content=body)
        assert response.status_code == 201
        assert response.content == b'{"ok":true}'
        (sent,) = proxy.upstream_requests()
        assert sent.method == method
        assert str(sent.url) == UPSTREAM + path[len("/v1") :]
        assert sent.content == (body or b"")


async def test_upstream_error_on_another_route_is_normalised() -> None:
    async with serve() as proxy:
        proxy.router.get(f"{UPSTREAM}/models/nope").mock(
            return_value=httpx.Response(404, text="no such model", headers={"x-request-id": "r1"})
        )
        response = await proxy.http.get("/v1/models/nope")
        assert response.status_code == 404
        assert "no such model" in assert_openai_error(response.json())["message"]
        assert response.headers["x-request-id"] == "r1"


async def test_unknown_route_outside_v1_is_an_openai_shaped_404() -> None:
    async with serve() as proxy:
        response = await proxy.http.get("/v2/models")
        assert response.status_code == 404
        assert_openai_error(response.json())
        assert proxy.upstream_requests() == []


async def test_healthz_ok_with_a_store() -> None:
    async with serve() as proxy:
        response = await proxy.http.get("/healthz")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"


class _UnreachableStore:
    """A store whose database has gone away: ping raises, everything else delegates."""

    def __init__(self, inner: PageStore) -> None:
        self.inner = inner

    async def ping(self) -> None:
        raise ConnectionRefusedError("database is down")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_healthz_503_when_the_store_ping_fails() -> None:
    inner = await open_store("memory://")
    try:
        async with serve(store=_UnreachableStore(inner)) as proxy:  # type: ignore[arg-type]
            response = await proxy.http.get("/healthz")
            assert response.status_code == 503
            assert response.json()["status"] != "ok"
    finally:
        await inner.close()


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample, 0 when absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        metric, _, value = line.rpartition(" ")
        if not metric.startswith(name + "{") and metric != name:
            continue
        if all(f'{key}="{val}"' in metric for key, val in labels.items()):
            return float(value)
    return 0.0


async def test_metrics_count_a_request() -> None:
    async with serve() as proxy:
        proxy.router.get(f"{UPSTREAM}/models").mock(
            return_value=httpx.Response(200, json={"data": []})
        )
        before = (await proxy.http.get("/metrics")).text
        assert (await proxy.http.get("/v1/models")).status_code == 200
        assert (await proxy.http.get("/v1/models")).status_code == 200
        response = await proxy.http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        after = response.text
        assert "# TYPE vm_proxy_requests_total counter" in after
        labels = {"route": "/v1/models", "status": "200"}
        counted = _sample(after, "vm_proxy_requests_total", **labels)
        assert counted - _sample(before, "vm_proxy_requests_total", **labels) == 2


@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "unsized"])
async def test_large_body_is_relayed_intact(sized: bool) -> None:
    # Over a megabyte, and without a length: both are relayed as a stream, not buffered.
    body = b"".join(b"line %07d of a large file\n" % i for i in range(120_000))
    assert len(body) > 2 * 1024 * 1024
    pieces = [body[i : i + 65_536] for i in range(0, len(body), 65_536)]
    headers = {"content-type": "application/octet-stream"}
    if sized:
        headers["content-length"] = str(len(body))
    async with serve() as proxy:
        proxy.router.get(f"{UPSTREAM}/files/file-1/content").mock(
            side_effect=lambda request: httpx.Response(200, headers=headers, stream=Chunks(pieces))
        )
        response = await proxy.http.get("/v1/files/file-1/content")
        assert response.status_code == 200
        assert response.content == body
        assert response.headers["content-type"] == "application/octet-stream"


async def test_no_content_reply_is_relayed() -> None:
    async with serve() as proxy:
        proxy.router.delete(f"{UPSTREAM}/threads/thread_1").mock(
            side_effect=lambda request: httpx.Response(
                204, headers={"x-request-id": "req_del"}, stream=Chunks([])
            )
        )
        response = await proxy.http.delete("/v1/threads/thread_1")
        assert response.status_code == 204
        assert response.content == b""
        assert response.headers["x-request-id"] == "req_del"
