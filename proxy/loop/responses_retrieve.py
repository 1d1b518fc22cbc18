"""`GET /v1/responses/{id}` for an answer of the proxy's own: rebuilt from the store.

A memory turn's Response carries an id the proxy made (its answer came from several
upstream calls, or from a chat upstream), which no upstream knows: asked for it, the
upstream answers 404. The store knows where each such answer ended (`find_response`, what
`previous_response_id` reads), and the answer's message keeps the output items as the
client received them (their ids included; proxy.upstream.responses_format.ITEMS). So the
Response is rebuilt from there: the same id, output items and creation time. What was not
kept is given as unknown: `usage` and `model` are null, and the request's echoed fields
(instructions, tools, ...) are their defaults.

The upstream is asked first, so an id it knows (a relayed answer, when the upstream stores
responses) comes back exactly as it has it; a chat upstream, which has no Responses API,
is asked only when the store does not know the id (so that no one checks the key of a
GET answered from the store: it reads what the same key's tenant stored, as a
`previous_response_id` does). With `tenant.require_credential`, a GET without one is
refused as a POST is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy.loop.policy import credential, memory_off, refuse_anonymous, request_tenant
from proxy.loop.responses_output import call_item, message_item, response_object
from proxy.loop.services import AppServices
from proxy.store.base import PageStore
from proxy.upstream.relay import relay
from proxy.upstream.responses_format import ITEMS

JSON = "application/json"
NOT_FOUND = 404


async def retrieve_response(
    state: AppServices, request: Request, response_id: str, path: str
) -> Response:
    """The upstream's answer to the GET of `path` (as the client wrote it), unless it does
    not know the id and the store holds the proxy's answer of that id (for this tenant):
    then that answer, rebuilt."""
    settings = state.settings
    method = request.method  # GET, or HEAD (which the route takes too), answered alike
    rebuildable = not memory_off(settings.vm.mode, request.headers) and not _streamed(request)
    if rebuildable and settings.upstream.responses == "chat":
        rebuilt = await _rebuilt(state, request, response_id)
        if rebuilt is not None:
            return rebuilt
        return await relay(state.upstream, request, method, path, None)
    relayed = await relay(state.upstream, request, method, path, None)
    if relayed.status_code != NOT_FOUND or not rebuildable:
        return relayed
    return await _rebuilt(state, request, response_id) or relayed


def _streamed(request: Request) -> bool:
    """`?stream=true` asks for a background response's events, which only the upstream has."""
    return request.query_params.get("stream", "").lower() == "true"


async def _rebuilt(state: AppServices, request: Request, response_id: str) -> Response | None:
    tenant_settings = state.settings.tenant
    if tenant_settings.require_credential and credential(request.headers) is None:
        raise refuse_anonymous()
    tenant = request_tenant(request.headers, tenant_settings.secret, tenant_settings.default)
    found = await state.store.find_response(tenant, response_id)
    if found is None:
        return None
    conv_id, length = found
    obj = await stored_response(state.store, tenant, response_id, conv_id, length)
    if obj is None:
        return None
    return Response(orjson.dumps(obj), media_type=JSON, headers={"x-vm-session": conv_id})


async def stored_response(
    store: PageStore, tenant: str, response_id: str, conv_id: str, length: int
) -> dict[str, Any] | None:
    """The Response of `response_id`, whose answer is message `length - 1` of `conv_id`;
    None when that message is not stored (the conversation gone since)."""
    if length < 1:
        return None
    path = await store.path(tenant, conv_id)
    pages = await store.pages_in_range(path, length - 1, length)
    answer = next((p for p in pages if p.anchor == length - 1 and p.message is not None), None)
    if answer is None or answer.message is None:
        return None
    output = output_items(answer.message, response_id) if answer.role == "assistant" else []
    return response_object(
        {}, None, response_id=response_id, created_at=int(answer.created_at),
        status="completed", output=output, usage=None,
    )


def output_items(message: Mapping[str, Any], response_id: str) -> list[dict[str, Any]]:
    """A stored answer's output items: those it carries, as the client received them;
    else made from its text and calls, with ids that are the same at every GET."""
    carried = message.get(ITEMS)
    if isinstance(carried, list) and carried and all(isinstance(i, Mapping) for i in carried):
        return [dict(item) for item in carried]
    items: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        items.append(message_item(content, _item_id("msg", response_id, 0)))
    for number, call in enumerate(message.get("tool_calls") or (), start=1):
        if isinstance(call, Mapping):
            items.append(call_item(call, _item_id("fc", response_id, number)))
    return items


def _item_id(prefix: str, response_id: str, number: int) -> str:
    digest = hashlib.blake2b(f"{response_id}/{number}".encode(), digest_size=24).hexdigest()
    return f"{prefix}_{digest}"
