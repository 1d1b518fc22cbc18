"""The fault loop for `stream: false`: call, resolve VM calls, call again, answer once."""

from __future__ import annotations

import time
from typing import Any

import orjson

from proxy.errors import UpstreamError
from proxy.loop.citations import strip_citations
from proxy.loop.turn import Turn
from proxy.upstream.assemble import AssembledMessage
from proxy.upstream.client import error_from_status
from proxy.upstream.completion import assemble_response, to_chat_completion
from proxy.upstream.usage import Usage, add_usage


async def run_complete(turn: Turn, body: dict[str, Any]) -> dict[str, Any]:
    """Run the loop from the first `body` and return the client's chat.completion body."""
    usage: Usage | None = None
    first: AssembledMessage | None = None
    for iteration in range(turn.max_iterations):
        message = await _call(turn, body, iteration)
        first = first or message
        usage = add_usage(usage, message.usage)
        vm_calls, client_calls = turn.split_calls(message.tool_calls)
        results = await turn.resolve(vm_calls) if vm_calls else []
        following = turn.body_after(iteration, body, message, vm_calls, client_calls, results)
        if following is None:
            # The last iteration answers whatever it holds, as a stream does: a model that
            # still calls the withdrawn tools gets its text (perhaps none), finish "stop".
            return await _answer(turn, message, client_calls, usage, first)
        body = following
    raise AssertionError("unreachable: the last iteration always answers")


async def _call(turn: Turn, body: dict[str, Any], iteration: int) -> AssembledMessage:
    turn.record_upstream_prompt(body)
    started = time.perf_counter()
    reply = await turn.upstream.post_json("/chat/completions", body, turn.headers)
    turn.note_reply(reply.raw_headers, time.perf_counter() - started)
    if reply.status_code >= 400:
        raise error_from_status(reply.status_code, reply.content, reply.raw_headers)
    try:
        parsed = orjson.loads(reply.content)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            "The upstream answered with a body that is not JSON.", code="invalid_response"
        ) from None
    if not isinstance(parsed, dict):
        raise UpstreamError("The upstream answer is not a JSON object.", code="invalid_response")
    message = assemble_response(parsed, id_salt=f"{turn.salt}/{iteration}")
    if message.error is not None:
        error = message.error
        raise UpstreamError(
            str(error.get("message") or "upstream error"),
            code=None if error.get("code") is None else str(error.get("code")),
            error_type=str(error.get("type") or "upstream_error"),
        )
    return message


async def _answer(
    turn: Turn,
    message: AssembledMessage,
    client_calls: list[dict[str, Any]],
    usage: Usage | None,
    first: AssembledMessage,
) -> dict[str, Any]:
    content = message.content
    if content:
        content, cited = strip_citations(content, citations=turn.strip_citations)
        turn.note_citations(cited)
    body = to_chat_completion(
        message,
        content=content,
        tool_calls=client_calls,
        usage=usage,
        id=first.id,
        created=first.created,
        model=first.model,
    )
    await turn.finish(content, client_calls)
    return body
