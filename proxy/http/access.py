"""Per-request bookkeeping: one access-log line, the request metrics, and the last-resort
error answer (an OpenAI-shaped 500, never a traceback on the wire).

Handlers reach this request's `proxy.logs.RequestStats` with `request_stats(scope)` to report
the upstream latency and anything worth logging (the fault loop adds its own fields).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.errors import ProxyError
from proxy.logs import RequestStats, log, log_request, start_request_stats
from proxy.metrics import Counter, Histogram, Metrics
from proxy.serving import SERVING
from proxy.upstream.disconnect import ClientDisconnected
from proxy.upstream.relay import AbortResponse

# Health probes and scrapes would drown the access log; they are logged at debug.
_QUIET_ROUTES = frozenset({"/healthz", "/metrics"})
CLIENT_CLOSED = 499  # nginx's code for "client closed request"; logs and metrics only


@dataclass(frozen=True, slots=True)
class _Series:
    requests: Counter
    seconds: Histogram
    upstream_seconds: Histogram
    bytes_in: Counter
    bytes_out: Counter


# The API's own route heads: any other `/v1/...` path is labelled `/v1/other`, so that a
# client cannot make a metrics series (and the memory and rendering time it takes) per
# path it invents (the review: 30,000 random paths, a 90 MB /metrics).
API_HEADS = frozenset({
    "assistants", "audio", "batches", "chat", "completions", "containers", "conversations",
    "embeddings", "evals", "files", "fine_tuning", "images", "models", "moderations",
    "realtime", "responses", "threads", "uploads", "vector_stores", "videos",
})


def route_of(path: str) -> str:
    """A low-cardinality label for a path: `/v1/files/file-abc` → `/v1/files`."""
    if path.startswith("/v1/"):
        if path == "/v1/chat/completions":
            return path
        head = path[4:].split("/", 1)[0]
        if not head:
            return "/v1"
        return f"/v1/{head}" if head in API_HEADS else "/v1/other"
    if path in _QUIET_ROUTES:
        return path
    return "other"


def _internal_error_body() -> bytes:
    return ProxyError(
        "The proxy failed while handling this request; the error has been logged.",
        code="internal_error",
    ).to_json()


class AccessMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Series per (route, status): label sets are few, and looking them up by name and
        # sorted labels on every request costs more than the rest of the bookkeeping.
        self._cache: dict[tuple[str, int], _Series] = {}
        # Request ids: unique per process start, cheap per request.
        self._id_prefix = os.urandom(4).hex()
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        stats = start_request_stats(scope, f"{self._id_prefix}-{next(self._ids):x}")
        status = 0
        bytes_out = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        SERVING.requests += 1
        try:
            await self.app(scope, receive, counting_send)
        except (ClientDisconnected, ClientDisconnect):
            status = CLIENT_CLOSED
        except AbortResponse as exc:
            log.warning(
                "response aborted", extra={"reason": str(exc), "request_id": stats.request_id}
            )
        except Exception:
            log.exception("unhandled error", extra={"request_id": stats.request_id})
            if status == 0:
                status = 500
                body = _internal_error_body()
                bytes_out += len(body)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            SERVING.requests -= 1
            self._record(scope, status, started, stats, bytes_out)

    def _series(self, route: str, status: int) -> _Series:
        key = (route, status)
        series = self._cache.get(key)
        if series is None:
            metrics, by_route = self.metrics, {"route": route}
            series = self._cache[key] = _Series(
                requests=metrics.counter(
                    "vm_proxy_requests_total",
                    {"route": route, "status": str(status)},
                    help="Requests by route and status.",
                ),
                seconds=metrics.histogram(
                    "vm_proxy_request_seconds", by_route, help="Time to answer a request in full."
                ),
                upstream_seconds=metrics.histogram(
                    "vm_proxy_upstream_seconds",
                    by_route,
                    help="Upstream latency: to the response headers (streams) or whole body.",
                ),
                bytes_in=metrics.counter(
                    "vm_proxy_request_bytes_total", by_route, help="Request body bytes received."
                ),
                bytes_out=metrics.counter(
                    "vm_proxy_response_bytes_total", by_route, help="Response body bytes sent."
                ),
            )
        return series

    def _record(
        self,
        scope: Scope,
        status: int,
        started: float,
        stats: RequestStats,
        bytes_out: int,
    ) -> None:
        path = scope["path"]
        route = route_of(path)
        duration = time.perf_counter() - started
        series = self._series(route, status)
        series.requests.inc()
        series.seconds.observe(duration)
        if stats.upstream_ms is not None:
            series.upstream_seconds.observe(stats.upstream_ms / 1000.0)
        series.bytes_in.inc(stats.bytes_in)
        series.bytes_out.inc(bytes_out)
        if route in _QUIET_ROUTES and not log.isEnabledFor(logging.DEBUG):
            return
        log_request(
            method=scope["method"],
            route=route,
            path=path,
            status=status,
            duration_ms=duration * 1000.0,
            upstream_ms=stats.upstream_ms,
            bytes_in=stats.bytes_in,
            bytes_out=bytes_out,
            request_id=stats.request_id,
            upstream_request_id=stats.upstream_request_id,
            extra=stats.extra,
        )
