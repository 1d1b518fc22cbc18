"""`POST /v1/chat/completions` once validated: pass through, or run the fault loop.

The order of decisions: the mode (`off` is a pure pass-through that stores nothing); the
tenant and the conversation, with the new messages stored; then whether the full prompt is
over `vm.activate_above`. Below it the request is relayed unchanged and the answer is
stored on the way back; above it the request is rebuilt around the working set and the
fault loop answers. An unexpected failure in the memory path falls back to the plain
pass-through when `vm.fail_open` is on; errors of the client or the upstream are answered
as such.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from proxy.assemble import AssembledMessage
from proxy.errors import ProxyError
from proxy.logs import log
from proxy.loop.complete import run_complete
from proxy.loop.observe import observe
from proxy.loop.policy import request_mode, request_tenant, session_name
from proxy.loop.prepare import Prepared, prepare
from proxy.loop.stream import open_first, stream_events
from proxy.passthrough import passthrough_chat

JSON = "application/json"


async def handle_chat(request: Request, body: dict[str, Any], raw: bytes) -> Response:
    state = request.app.state
    settings = state.settings
    stream = body.get("stream") is True
    mode = request_mode(settings.vm.mode, request.headers, body)
    session = session_name(request.headers)
    if mode == "off":
        return await passthrough_chat(state, request, raw, stream)
    tenant = request_tenant(request.headers, settings.tenant.secret, settings.tenant.default)
    started = time.perf_counter()
    try:
        prepared = await prepare(state, request, body, tenant=tenant, session=session, mode=mode)
    except ProxyError:
        raise
    except Exception:
        if not settings.vm.fail_open:
            raise
        log.exception("VM preparation failed; answering as a pass-through (vm.fail_open)")
        state.metrics.counter(
            "vm_fail_open_total", help="VM failures answered as pass-through"
        ).inc()
        return await passthrough_chat(state, request, raw, stream)
    state.metrics.histogram(
        "vm_prepare_seconds", help="Time to place, store and pack one request"
    ).observe(time.perf_counter() - started)
    if prepared.turn is None:
        if prepared.forward_body is not None:
            raw = orjson.dumps(prepared.forward_body)
        return _observed_passthrough(
            await passthrough_chat(state, request, raw, stream), prepared
        )
    turn = prepared.turn
    state.metrics.counter("vm_turns_total", help="Requests answered with virtual memory").inc()
    if stream:
        opened = await open_first(turn, turn.first_body())
        return StreamingResponse(
            stream_events(turn, turn.first_body(), opened),
            media_type="text/event-stream",
            headers=turn.response_headers(final=False),
        )
    try:
        answer = await run_complete(turn)
    except ProxyError:
        raise
    except Exception:
        if not settings.vm.fail_open:
            raise
        log.exception("the fault loop failed; answering as a pass-through (vm.fail_open)")
        return await passthrough_chat(state, request, raw, stream)
    metrics = state.metrics
    metrics.counter("vm_faults_total", help="Page faults answered").inc(turn.faults)
    metrics.counter("vm_citations_total", help="Citations stripped from answers").inc(
        len(turn.citations)
    )
    metrics.counter("vm_prompt_tokens_sent_total", help="Prompt tokens sent upstream").inc(
        turn.prompt_tokens_sent
    )
    metrics.counter(
        "vm_prompt_tokens_full_total", help="Prompt tokens the full histories would cost"
    ).inc(turn.prompt_tokens_full)
    return Response(
        orjson.dumps(answer), media_type=JSON, headers=turn.response_headers(final=True)
    )


def _observed_passthrough(response: Response, prepared: Prepared) -> Response:
    """Relay below the threshold; store the answer when it is complete."""

    async def store_answer(message: AssembledMessage) -> None:
        answer: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            answer["tool_calls"] = message.tool_calls
        await prepared.conversations.extend(prepared.tenant, prepared.placement, [answer])

    for name, value in prepared.headers().items():
        response.headers[name] = value
    return observe(response, store_answer)
