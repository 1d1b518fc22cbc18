"""The routes: `POST /v1/chat/completions` and `POST /v1/responses` (read, validate, hand to
the fault loop), every other `/v1/*` route (relayed as it is), `GET /healthz` and
`GET /metrics`."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy.http.admin import refuses_admin_key
from proxy.http.body import read_body
from proxy.http.resent import MIN_BYTES as RESENT_MIN_BYTES
from proxy.http.resent import ResentBodies
from proxy.http.responses_validation import parse_responses_request
from proxy.http.state import AppState, app_state
from proxy.http.validation import parse_chat_request
from proxy.logs import log
from proxy.loop.handler import handle_chat
from proxy.loop.policy import memory_off, request_tenant
from proxy.loop.responses_handler import handle_responses
from proxy.loop.responses_retrieve import retrieve_response
from proxy.upstream.relay import relay

JSON = "application/json"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def chat_completions(request: Request) -> Response:
    state = app_state(request)
    refuses_admin_key(request.headers, state.settings.admin)
    raw = await read_body(request, state.settings.server.max_body_bytes, read=True)
    # A long history repeated from the request before is not parsed again, unless nobody
    # reads it (mode off relays the body as it came).
    long = len(raw) >= RESENT_MIN_BYTES
    memory = long and not memory_off(state.settings.vm.mode, request.headers)
    resent, tenant = _resent(state, request, state.resent_chat if memory else None)
    body = parse_chat_request(raw, resent, tenant)
    return await handle_chat(state, request, body, raw)


async def responses(request: Request) -> Response:
    state = app_state(request)
    refuses_admin_key(request.headers, state.settings.admin)
    raw = await read_body(request, state.settings.server.max_body_bytes, read=True)
    # The memory reads the input as chat messages, made in the pass that checks it; a
    # request relayed as it came (mode off) is only checked.
    memory = not memory_off(state.settings.vm.mode, request.headers)
    long = len(raw) >= RESENT_MIN_BYTES
    resent, tenant = _resent(state, request, state.resent_responses if memory and long
                             else None)
    body, messages = parse_responses_request(raw, convert=memory, resent=resent, tenant=tenant)
    return await handle_responses(state, request, body, raw, messages)


def _resent(
    state: AppState, request: Request, bodies: ResentBodies | None
) -> tuple[ResentBodies | None, str]:
    """`bodies`, the long requests remembered (proxy.http.resent), with the tenant they are
    kept for; (None, "") when the request is not looked up there (`bodies` None)."""
    if bodies is None:
        return None, ""
    tenant = state.settings.tenant
    return bodies, request_tenant(request.headers, tenant.secret, tenant.default)


async def response_by_id(request: Request) -> Response:
    """`GET /v1/responses/{id}`: the upstream's, or a memory turn's rebuilt from the store."""
    state = app_state(request)
    refuses_admin_key(request.headers, state.settings.admin)
    await read_body(request, state.settings.server.max_body_bytes)
    return await retrieve_response(
        state, request, request.path_params["response_id"], _upstream_path(request)
    )


async def passthrough_any(request: Request) -> Response:
    """Every `/v1/*` route other than the two with memory, any method."""
    state = app_state(request)
    refuses_admin_key(request.headers, state.settings.admin)
    body = await read_body(request, state.settings.server.max_body_bytes)
    return await relay(state.upstream, request, request.method, _upstream_path(request),
                       body or None)


def _upstream_path(request: Request) -> str:
    """The request's path after `/v1`, as the client wrote it (percent-escapes kept)."""
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    path: str = raw_path.decode("latin-1")
    return path[path.index("/v1") + 3 :]


async def healthz(request: Request) -> Response:
    try:
        await app_state(request).store.ping()
    except Exception as exc:  # any failure means "not ready"; the reason goes in the body
        log.warning("health check failed", extra={"reason": repr(exc)})
        body = {"status": "unavailable", "store": type(exc).__name__}
        return Response(orjson.dumps(body), status_code=503, media_type=JSON)
    return Response(b'{"status":"ok"}', media_type=JSON)


async def metrics_text(request: Request) -> Response:
    return Response(
        app_state(request).metrics.render(),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
