"""The fault loop for `stream: false`: call, resolve VM calls, call again, answer once.

`run_loop` is the loop of every dialect: it is given how one upstream call is made and read
(`call`: a chat completion here, a Responses call in responses_turn.py) and returns every
iteration's message; `run_complete` answers a chat completion with it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.errors import UpstreamError
from proxy.loop.citations import strip_citations
from proxy.loop.turn import Turn
from proxy.upstream.assemble import AssembledMessage
from proxy.upstream.client import error_from_status
from proxy.upstream.completion import assemble_response, to_chat_completion
from proxy.upstream.usage import Usage, add_usage

# (turn, the body of this iteration, iteration number) -> the upstream's message.
Call = Callable[[Turn, dict[str, Any], int], Awaitable[AssembledMessage]]


@dataclass
class LoopResult:
    messages: list[AssembledMessage]  # every iteration's, in order; the last answers
    client_calls: list[dict[str, Any]]  # the last message's calls for the client
    usage: Usage | None  # summed over the iterations


async def run_complete(turn: Turn, body: dict[str, Any]) -> dict[str, Any]:
    """Run the loop from the first `body` and return the client's chat.completion body."""
    result = await run_loop(turn, body, call_chat)
    return await _answer(turn, result)


async def run_loop(turn: Turn, body: dict[str, Any], call: Call) -> LoopResult:
    messages: list[AssembledMessage] = []
    usage: Usage | None = None
    for iteration in range(turn.max_iterations):
        message = await call(turn, body, iteration)
        messages.append(message)
        usage = add_usage(usage, message.usage)
        vm_calls, client_calls = turn.split_calls(message.tool_calls)
        results = await turn.resolve(vm_calls) if vm_calls else []
        following = turn.body_after(iteration, body, message, vm_calls, client_calls, results)
        if following is None:
            # The last iteration answers whatever it holds, as a stream does: a model that
            # still calls the withdrawn tools gets its text (perhaps none), finish "stop".
            return LoopResult(messages, client_calls, usage)
        body = following
    raise AssertionError("unreachable: the last iteration always answers")


async def call_chat(turn: Turn, body: dict[str, Any], iteration: int) -> AssembledMessage:
    turn.record_upstream_prompt(body)
    parsed = await post_for_json(turn, "/chat/completions", body)
    return raise_upstream_error(assemble_response(parsed, id_salt=f"{turn.salt}/{iteration}"))


async def post_for_json(turn: Turn, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` upstream and read the JSON object it answers (errors raised)."""
    turn.note_sent(path, body)
    started = time.perf_counter()
    reply = await turn.upstream.post_json(path, body, turn.headers)
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
    return parsed


def raise_upstream_error(message: AssembledMessage) -> AssembledMessage:
    """`message`, unless it is an error the upstream sent with a 200."""
    if message.error is not None:
        error = message.error
        raise UpstreamError(
            str(error.get("message") or "upstream error"),
            code=None if error.get("code") is None else str(error.get("code")),
            error_type=str(error.get("type") or "upstream_error"),
        )
    return message


async def _answer(turn: Turn, result: LoopResult) -> dict[str, Any]:
    message, first = result.messages[-1], result.messages[0]
    content = message.content
    if content:
        content, cited = strip_citations(content, citations=turn.strip_citations)
        turn.note_citations(cited)
    body = to_chat_completion(
        message,
        content=content,
        tool_calls=result.client_calls,
        usage=result.usage,
        id=first.id,
        created=first.created,
        model=first.model,
    )
    await turn.finish(content, result.client_calls, refusal=message.refusal)
    return body
