"""The Prometheus registry and GET /metrics."""

from __future__ import annotations

import httpx
import pytest

from proxy.metrics import Metrics
from proxy.serving import SERVING
from tests.http.conftest import CHAT, completion, edge


def test_counters_render_in_the_text_format() -> None:
    metrics = Metrics()
    metrics.counter("vm_faults_total", {"mode": "strict"}, help="Page faults.").inc()
    metrics.counter("vm_faults_total", {"mode": "strict"}).inc(2)
    metrics.counter("vm_faults_total", {"mode": "relaxed"}).inc()
    metrics.counter("vm_tokens_saved_total").inc(1.5)
    assert metrics.render() == (
        "# HELP vm_faults_total Page faults.\n"
        "# TYPE vm_faults_total counter\n"
        'vm_faults_total{mode="relaxed"} 1\n'
        'vm_faults_total{mode="strict"} 3\n'
        "# TYPE vm_tokens_saved_total counter\n"
        "vm_tokens_saved_total 1.5\n"
    )


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    metrics = Metrics()
    latency = metrics.histogram("upstream_seconds", {"route": "/v1"}, buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        latency.observe(value)
    assert metrics.render().splitlines()[1:] == [
        'upstream_seconds_bucket{route="/v1",le="0.1"} 2',
        'upstream_seconds_bucket{route="/v1",le="1"} 3',
        'upstream_seconds_bucket{route="/v1",le="+Inf"} 4',
        'upstream_seconds_sum{route="/v1"} 3.65',
        'upstream_seconds_count{route="/v1"} 4',
    ]


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.counter("odd_total", {"path": 'a"b\\c\nd'}).inc()
    assert 'odd_total{path="a\\"b\\\\c\\nd"} 1' in metrics.render()


def test_a_name_keeps_its_kind_and_counters_only_go_up() -> None:
    metrics = Metrics()
    metrics.counter("requests_total").inc()
    with pytest.raises(ValueError, match="counter"):
        metrics.histogram("requests_total")
    with pytest.raises(ValueError):
        metrics.counter("requests_total").inc(-1)


async def test_the_endpoint_counts_requests_by_route_and_status() -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(404, json={"error": "gone"})
        return httpx.Response(200, json=completion(), headers={"x-request-id": "req_1"})

    async with edge(upstream) as proxy:
        for _ in range(2):
            await proxy.http.post("/v1/chat/completions", json=CHAT)
        await proxy.http.get("/v1/models")
        await proxy.http.post("/v1/chat/completions", json={"model": "m"})  # 400
        response = await proxy.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = set(response.text.splitlines())
    assert 'vm_proxy_requests_total{route="/v1/chat/completions",status="200"} 2' in lines
    assert 'vm_proxy_requests_total{route="/v1/chat/completions",status="400"} 1' in lines
    assert 'vm_proxy_requests_total{route="/v1/models",status="404"} 1' in lines
    assert 'vm_proxy_upstream_seconds_count{route="/v1/chat/completions"} 2' in lines
    assert any(line.startswith("vm_proxy_response_bytes_total{") for line in lines)


async def test_invented_paths_share_one_series() -> None:
    """A client's random `/v1/<anything>` paths are one label, not a series each (30,000
    of them made a 90 MB /metrics that held the loop for seconds)."""

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "no such route"})

    async with edge(upstream) as proxy:
        for n in range(50):
            await proxy.http.get(f"/v1/invented-{n}/x")
        await proxy.http.get("/v1/files/file-abc")
        text = (await proxy.http.get("/metrics")).text
    assert 'vm_proxy_requests_total{route="/v1/other",status="404"} 50' in text.splitlines()
    assert 'route="/v1/files"' in text and "invented" not in text


async def test_the_requests_being_served_are_counted_until_answered() -> None:
    """What the SQLite store asks before waiting on its writer (proxy.serving)."""
    seen: list[int] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(SERVING.requests)
        if request.url.path.endswith("/models"):
            raise RuntimeError("an upstream bug: the 500 path")
        return httpx.Response(200, json=completion())

    before = SERVING.requests
    async with edge(upstream) as proxy:
        await proxy.http.post("/v1/chat/completions", json=CHAT)
        assert (await proxy.http.get("/v1/models")).status_code == 500
        await proxy.http.post("/v1/chat/completions", json={"model": "m"})  # 400
    assert seen == [before + 1, before + 1]
    assert SERVING.requests == before
