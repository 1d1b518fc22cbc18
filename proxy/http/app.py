"""The ASGI application: routes, error answers, and the lifespan that owns the upstream
client and the page store. `app.state` is a proxy.http.state.AppState.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.config import Settings, resolve_embeddings, with_prompt_shape
from proxy.errors import MemoryUnavailable, ProxyError, UpstreamError
from proxy.http.access import AccessMiddleware
from proxy.http.admin import admin_routes
from proxy.http.routes import (
    ALL_METHODS,
    chat_completions,
    healthz,
    metrics_text,
    passthrough_any,
    response_by_id,
    responses,
)
from proxy.http.state import AppState
from proxy.logs import log
from proxy.loop.meaning_start import close_meaning, open_meaning
from proxy.loop.summarizer import Summarizer
from proxy.store import CachedStore, PageStore, StoreError, open_store
from proxy.tokens import O200K, get_encoding
from proxy.upstream.client import Upstream

JSON = "application/json"


def create_app(
    settings: Settings,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    store: PageStore | None = None,
) -> Starlette:
    """Build the app. Tests inject `upstream_transport` (e.g. a respx router's) and `store`;
    an injected store is the caller's to close, an opened one the lifespan's."""

    chosen = settings.embeddings.provider != "auto"
    settings = resolve_embeddings(with_prompt_shape(settings))
    state = AppState(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned_store = store is None
        # The default encoding's ranks take ~0.6 s to load: at start-up, in a thread, not
        # on the first request, where every other request would wait for them.
        await asyncio.to_thread(get_encoding, O200K)
        state.store = (
            await open_store(settings.store.url, cache_pages=settings.store.cache_pages,
                             metrics=state.metrics)
            if store is None
            else store
        )
        export_cache_stats(state)
        state.upstream = upstream = Upstream(settings.upstream, upstream_transport)
        if settings.vm.summarizer != "off":
            state.summarizer = Summarizer(
                settings.vm.summarizer, settings.vm.summarizer_daily_tokens, state.store,
                upstream, state.metrics,
            )
            state.summarizer.start()
        try:
            state.meaning = await open_meaning(
                settings.embeddings, state.store, state.metrics, chosen=chosen,
                transport=upstream_transport,
            )
            yield
        finally:
            if state.summarizer is not None:
                await state.summarizer.aclose()
                state.summarizer = None
            await close_meaning(state.meaning)
            state.meaning = None
            await upstream.aclose()
            if owned_store:
                await state.store.close()

    app = Starlette(
        # The hot route first: the router tries them in order.
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/responses/{response_id}", response_by_id, methods=["GET"]),
            Route("/v1/{path:path}", passthrough_any, methods=ALL_METHODS),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_text, methods=["GET"]),
            *admin_routes(settings.admin),
        ],
        middleware=[Middleware(AccessMiddleware, metrics=state.metrics)],
        exception_handlers={
            ProxyError: proxy_error,
            StoreError: store_error,
            HTTPException: http_error,
        },
        lifespan=lifespan,
    )
    app.state = state
    return app


def export_cache_stats(state: AppState) -> None:
    """The page cache's hits and misses (and size) in /metrics, read as they are scraped."""
    store = state.store
    if not isinstance(store, CachedStore):
        return
    metrics = state.metrics
    metrics.sample("vm_page_cache_hits_total", lambda: store.page_hits, kind="counter",
                   help="Page lookups answered by the in-process page cache")
    metrics.sample("vm_page_cache_misses_total", lambda: store.page_misses, kind="counter",
                   help="Page lookups the page cache passed to the store")
    metrics.sample("vm_page_cache_pages", lambda: store.cache_stats()["pages"],
                   help="Pages held by the page cache")


async def proxy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    if isinstance(exc, UpstreamError) and exc.status_code >= 500:
        # The client's error names the reason; the operator's log must too (the access
        # line has only the status).
        log.warning("upstream failed: %s", exc.message,
                    extra={"status": exc.status_code, "code": exc.code})
    return Response(
        exc.to_json(), status_code=exc.status_code, headers=exc.headers, media_type=JSON
    )


async def store_error(request: Request, exc: Exception) -> Response:
    """The store failed where the memory path could not fail open: a 503 to retry."""
    return await proxy_error(request, MemoryUnavailable(str(exc)))


async def http_error(request: Request, exc: Exception) -> Response:
    """Router errors (unknown path, wrong method) in OpenAI's shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Unknown route {request.method} {request.url.path}."
        error_type = "not_found_error"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
        error_type = "invalid_request_error"
    else:
        message, error_type = str(exc.detail), "invalid_request_error"
    error = ProxyError(message, status_code=exc.status_code, error_type=error_type)
    return Response(
        error.to_json(), status_code=exc.status_code, headers=exc.headers, media_type=JSON
    )
