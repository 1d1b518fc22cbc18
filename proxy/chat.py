"""`POST /v1/chat/completions`: read, validate, hand off.

`handle_chat` is the one place where a validated request leaves the HTTP edge. Today it
forwards as a pass-through; the fault loop takes over here and keeps `passthrough_chat`
as its fail-open path.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from proxy.body import read_body
from proxy.loop.handler import handle_chat as run_chat
from proxy.validation import parse_chat_request


async def chat_completions(request: Request) -> Response:
    raw = await read_body(request, request.app.state.settings.server.max_body_bytes)
    body = parse_chat_request(raw)
    return await handle_chat(request, body, raw)


async def handle_chat(request: Request, body: dict[str, Any], raw: bytes) -> Response:
    return await run_chat(request, body, raw)
