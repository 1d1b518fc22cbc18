"""Non-stream chat completion bodies: read one into an `AssembledMessage` (the same
normalisation as a stream's chunks), and write the body a client receives from one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.upstream.assemble import AssembledMessage, ChunkAccumulator, primary_choice
from proxy.upstream.usage import Usage, openai_usage

# Per-iteration measurements that would be wrong next to usage summed over iterations.
_NOT_FOR_CLIENT = frozenset(("x_groq", "sla_metrics", "timings", "prompt_filter_results"))


def assemble_response(body: Mapping[str, Any], *, id_salt: str = "") -> AssembledMessage:
    """The same normalisation for a non-stream chat completion body."""
    accumulator = ChunkAccumulator(id_salt=id_salt)
    choices = body.get("choices")
    choice = primary_choice(choices)
    chunk = dict(body)
    if choice is not None:
        message = choice.get("message")
        message = dict(message) if isinstance(message, dict) else {}
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            # Every entry of a message's list is its own call, whatever it says its index is.
            message["tool_calls"] = [
                {**call, "index": i} for i, call in enumerate(calls) if isinstance(call, dict)
            ]
        chunk["choices"] = [{**choice, "delta": message}]
    accumulator.feed(chunk)
    result = accumulator.result()
    if choice is not None:
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            result.parts = list(content)
        result.logprobs = choice.get("logprobs")
    if choice is None and result.error is None:
        result.error = {"message": "upstream response is not a chat completion",
                        "type": "upstream_error", "param": None, "code": "invalid_response"}
        result.finish_reason = None
    return result


def stored_answer(body: Mapping[str, Any]) -> AssembledMessage:
    """What a relayed completion's answer is as it is stored (`assemble_response`'s content,
    calls and error, the rest left out); the common answer, choice 0 a message of text with
    no calls and no error, read directly: every short chat's answer is one."""
    choices = body.get("choices")
    if type(choices) is list and choices and not body.get("error"):
        choice = choices[0]
        if type(choice) is dict and choice.get("index", 0) in (0, None):
            message = choice.get("message")
            if type(message) is dict and not message.get("tool_calls"):
                content = message.get("content")
                if type(content) is str:
                    return AssembledMessage(content=content)
    return assemble_response(body)


_KEEP: Any = object()


def to_chat_completion(
    message: AssembledMessage,
    *,
    content: str | None = _KEEP,
    tool_calls: list[dict[str, Any]] = _KEEP,
    usage: Usage | None = _KEEP,
    finish_reason: str | None = _KEEP,
    id: str | None = None,
    created: int | None = None,
    model: str | None = None,
    include_reasoning: bool = True,
) -> dict[str, Any]:
    """A client-facing non-stream body (OpenAI key order) from an assembled message.

    Overrides replace the message's own values (e.g. the client's calls only, usage
    summed over iterations). Unless given, finish_reason follows the calls that remain:
    "tool_calls" with calls, and never "tool_calls" without them.
    """
    text = message.content if content is _KEEP else content
    calls = message.tool_calls if tool_calls is _KEEP else tool_calls
    total = message.usage if usage is _KEEP else usage
    finish = message.finish_reason if finish_reason is _KEEP else finish_reason
    if finish_reason is _KEEP:
        if calls and finish in (None, "stop"):
            finish = "tool_calls"
        elif not calls and finish in (None, "tool_calls"):
            finish = "stop"
    body_message: dict[str, Any] = {"role": "assistant", "content": text}
    if include_reasoning and message.reasoning and message.reasoning_key:
        body_message[message.reasoning_key] = message.reasoning
    if calls:
        body_message["tool_calls"] = calls
    body_message["refusal"] = message.refusal
    for key, value in message.message_extra.items():
        body_message.setdefault(key, value)
    body: dict[str, Any] = {
        "id": id or message.id or "",
        "object": "chat.completion",
        "created": created if created is not None else (message.created or 0),
        "model": model or message.model or "",
        "choices": [
            {"index": 0, "message": body_message, "logprobs": message.logprobs,
             "finish_reason": finish}
        ],
    }
    if total is not None:
        body["usage"] = openai_usage(total)
    for key, value in message.extra.items():
        if key not in _NOT_FOR_CLIENT:
            body[key] = value
    if message.system_fingerprint:
        body["system_fingerprint"] = message.system_fingerprint
    return body
