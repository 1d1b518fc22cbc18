"""A Responses API request in the memory core's terms, and the upstream bodies made back.

The core places, stores and packs chat-completions bodies. `chat_body` turns a Responses
request into one (proxy.upstream.responses_format for the items); the packer then chooses
what the model sees. Each upstream call of the loop starts from that packed chat body:
`native_body` makes it a Responses request again (the client's own fields kept, its input
replaced by the packed prompt, never `previous_response_id`: the proxy owns the context),
`chat_upstream_body` a chat completion for an upstream without /v1/responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.loop.responses_input import input_messages
from proxy.upstream.responses_format import (
    INSTRUCTIONS,
    ITEMS,
    chat_tool,
    function_tool,
    input_items,
)

# Request fields the memory path rebuilds for the upstream; every other field is sent on.
# `conversation` and `previous_response_id` name upstream-side state, which a memory turn
# never relies on.
_REBUILT = frozenset({"input", "instructions", "previous_response_id", "conversation",
                      "tools", "tool_choice", "max_output_tokens", "stream",
                      "parallel_tool_calls"})
# What a message carries for the proxy alone, never sent to a chat upstream.
_MARKS = (ITEMS, INSTRUCTIONS)
# Fields with the same name and meaning in chat completions.
_SAME_IN_CHAT = ("temperature", "top_p", "user", "service_tier", "store", "prompt_cache_key",
                 "safety_identifier", "top_logprobs")


def builtin_tools(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's tools other than functions (web search, file search, MCP, ...)."""
    return [dict(t) for t in body.get("tools") or ()
            if isinstance(t, Mapping) and t.get("type") != "function"]


def not_servable(body: Mapping[str, Any], upstream_dialect: str) -> str | None:
    """Why memory cannot serve this request, which is then relayed as it is; else None."""
    if body.get("background") is True:
        return "background mode keeps the response at the upstream"
    if body.get("conversation") is not None:
        return "the request names an upstream conversation"
    if body.get("prompt") is not None:
        return "the request uses an upstream prompt template"
    if upstream_dialect == "chat" and builtin_tools(body):
        return "built-in tools need an upstream with /v1/responses (upstream.responses)"
    return None


def chat_body(
    body: Mapping[str, Any], messages: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The chat-completions body of a Responses request: what the core reads (messages,
    function tools, tool_choice, the reply's max tokens, stream) and, for a chat upstream,
    the request's settings in their chat names. `messages`: its instructions and input as
    chat messages when they were made already (by the request's validation)."""
    if messages is None:
        messages = input_messages(body.get("instructions"), body.get("input"))
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    tools = [chat_tool(t) for t in body.get("tools") or ()
             if isinstance(t, Mapping) and t.get("type") == "function"]
    if tools:
        chat["tools"] = tools
    choice = _chat_tool_choice(body.get("tool_choice"))
    if choice is not None and tools:
        chat["tool_choice"] = choice
    if isinstance(body.get("parallel_tool_calls"), bool) and tools:
        chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    if isinstance(body.get("max_output_tokens"), int):
        chat["max_tokens"] = body["max_output_tokens"]
    if body.get("stream") is True:
        chat["stream"] = True
    for name in _SAME_IN_CHAT:
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("metadata") is not None and body.get("store") is True:
        # Chat takes `metadata` only with `store: true` (OpenAI refuses it otherwise).
        chat["metadata"] = body["metadata"]
    if isinstance(body.get("top_logprobs"), int) and body["top_logprobs"] > 0:
        chat["logprobs"] = True
    reasoning = body.get("reasoning")
    if isinstance(reasoning, Mapping) and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    text = body.get("text")
    if isinstance(text, Mapping):
        fmt = _response_format(text.get("format"))
        if fmt is not None:
            chat["response_format"] = fmt
        if text.get("verbosity") is not None:
            chat["verbosity"] = text["verbosity"]
    return chat


def native_body(
    request: Mapping[str, Any], packed: Mapping[str, Any], *, stream: bool
) -> dict[str, Any]:
    """The Responses request for one upstream call of the loop: the client's request with
    the packed prompt as its input and the packed tools (the VM tools among them)."""
    out = {k: v for k, v in request.items() if k not in _REBUILT}
    out["input"] = input_items(packed.get("messages") or ())
    tools = [function_tool(t) for t in packed.get("tools") or () if isinstance(t, Mapping)]
    tools += builtin_tools(request)
    if tools:
        out["tools"] = tools
    choice = _upstream_tool_choice(request.get("tool_choice"), packed.get("tool_choice"),
                                   tools=bool(tools))
    if choice is not None:
        out["tool_choice"] = choice
    if "parallel_tool_calls" in packed:
        out["parallel_tool_calls"] = packed["parallel_tool_calls"]
    if isinstance(packed.get("max_tokens"), int):
        out["max_output_tokens"] = packed["max_tokens"]
    if stream:
        out["stream"] = True
    return out


def chat_upstream_body(packed: Mapping[str, Any]) -> dict[str, Any]:
    """The packed body as a chat completion: the carried Responses items and the marks of
    instructions left out (an assistant turn that was only such items goes too)."""
    messages = []
    for message in packed.get("messages") or ():
        if ITEMS not in message and INSTRUCTIONS not in message:
            messages.append(message)
            continue
        plain = {k: v for k, v in message.items() if k not in _MARKS}
        if plain.get("role") == "assistant" and not plain.get("content") and not plain.get(
            "tool_calls"
        ):
            continue
        messages.append(plain)
    return {**packed, "messages": messages}


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if isinstance(choice, Mapping) and choice.get("type") == "allowed_tools":
        # Chat says it too, with each tool named as chat names it.
        tools = [
            {"type": kind, kind: {"name": tool.get("name")}} if kind in ("function", "custom")
            else dict(tool)
            for tool in choice.get("tools") or () if isinstance(tool, Mapping)
            for kind in (tool.get("type"),)
        ]
        return {"type": "allowed_tools",
                "allowed_tools": {"mode": choice.get("mode"), "tools": tools}}
    return None


def _upstream_tool_choice(asked: Any, packed: Any, *, tools: bool) -> Any:
    """The `tool_choice` of one upstream call: the packed one (which the loop may change),
    or what the client asked where chat has no equal for it: a choice other than a
    function (allowed tools, a built-in tool, MCP, a custom tool; the turn runs passive
    then, policy.request_mode, so no VM tool competes with it), or a string beside only
    built-in tools (a chat body carries no choice without function tools)."""
    if isinstance(asked, Mapping) and asked.get("type") != "function":
        return asked
    if packed is not None:
        return _responses_tool_choice(packed)
    return asked if isinstance(asked, str) and tools else None


def _responses_tool_choice(choice: Any) -> Any:
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
        return {"type": "function", "name": name}
    return choice


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if not isinstance(fmt, Mapping):
        return None
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: v for k, v in fmt.items() if k != "type"}
        return {"type": "json_schema", "json_schema": schema}
    return None
