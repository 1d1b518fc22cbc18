"""Checking a chat completion request before the proxy reads it.

The proxy stores and rearranges messages, so it cannot leave validation to the upstream:
a malformed message must be refused here, with OpenAI's 400 and a `param` that names the
field (`messages[3].content`). Only what the proxy relies on is checked; unknown fields
and provider extensions pass through untouched.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.errors import InvalidRequest
from proxy.http.resent import Dialect, Remembered, ResentBodies
from proxy.loop.prefix_cache import Fingerprinted, short_fingerprints

# Content part types each role may send (openai-openapi ChatCompletionRequest*Message).
_TEXT_ONLY = frozenset({"text"})
PART_TYPES: dict[str, frozenset[str]] = {
    "system": _TEXT_ONLY,
    "developer": _TEXT_ONLY,
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "tool": _TEXT_ONLY,
}
ROLES = frozenset(PART_TYPES) | {"function"}
# Every part type OpenAI's API knows, of any role.
_KNOWN_PARTS = frozenset().union(*PART_TYPES.values())
_TEXT_ROLES = frozenset({"system", "developer", "user", "assistant"})
# Where a chat request keeps its history (proxy.http.resent): its messages, which are
# their own messages (a message's fingerprint is its own, whatever comes before it).
RESENT_MESSAGES = Dialect("messages", None, lambda item, message: message is item)
# The part's payload lives under a key named after its type.
_PAYLOAD_KEY = {
    "text": "text",
    "image_url": "image_url",
    "input_audio": "input_audio",
    "file": "file",
    "refusal": "refusal",
}
TOOL_TYPES = frozenset({"function", "custom"})


def parse_chat_request(
    raw: bytes, resent: ResentBodies | None = None, tenant: str = ""
) -> dict[str, Any]:
    """The request body as a dict, or InvalidRequest naming what is wrong. `resent`: the
    tenant's earlier requests, whose messages a request that repeats them is not parsed
    for again (proxy.http.resent); its messages then come fingerprinted (a long history's
    always do), as the memory reads them (proxy.loop.prefix_cache.Fingerprinted)."""
    if resent is not None:
        continued = resent.parse(tenant, raw, _validate_continued)
        if continued is not None:
            body, messages = continued
            body["messages"] = messages
            return body
    body = parse_json_object(raw)
    validate_chat_request(body)
    if resent is not None:
        messages = body["messages"]
        if len(messages) >= resent.min_items:
            prints = short_fingerprints(messages)
            if prints is not None:
                body["messages"] = Fingerprinted(messages, prints)
                resent.remember(tenant, raw, body, body["messages"])
    return body


def _validate_continued(earlier: Remembered, body: dict[str, Any]) -> Fingerprinted | None:
    """validate_chat_request for a body whose messages are only those after `earlier`'s
    (checked before); all its messages, fingerprinted."""
    validate_chat_request(body, first=len(earlier.items))
    new = body["messages"]
    prints = short_fingerprints(new)
    if prints is None:
        return None  # a long text, fingerprinted in a worker thread (proxy.loop.offload)
    return Fingerprinted([*earlier.messages, *new], [*earlier.messages.fingerprints, *prints])


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(
                "The request body is not valid UTF-8.", code="invalid_utf8"
            ) from None
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    return body


def require_model(body: dict[str, Any]) -> None:
    """Every generating route names its model, as a non-empty string."""
    model = body.get("model")
    if model is None:
        raise missing("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "must be a non-empty string")


def validate_chat_request(body: dict[str, Any], first: int = 0) -> None:
    """`first`: the index of the body's first message in the request (not 0 when the
    earlier ones were checked before: proxy.http.resent)."""
    require_model(body)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", "must be a boolean")
    options = body.get("stream_options")
    if options is not None:
        # The memory path reads it (and sends include_usage itself): a value the upstream
        # would refuse must be refused on every path alike.
        if not isinstance(options, dict):
            raise invalid("stream_options", "must be an object")
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise invalid("stream_options.include_usage", "must be a boolean")
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list):
        raise invalid("messages", "must be an array of message objects")
    if not messages:
        raise invalid("messages", "must contain at least one message", code="empty_array")
    for index, message in enumerate(messages):
        # A message of a role that may hold text, holding text and no tool calls, passes
        # every check of _check_message: a resent history is thousands of them.
        if type(message) is dict:
            role = message.get("role")
            if (
                type(role) is str
                and role in _TEXT_ROLES
                and type(message.get("content")) is str
                and "tool_calls" not in message
            ):
                continue
        _check_message(message, f"messages[{first + index}]")
    tools = body.get("tools")
    if tools is not None:
        _check_tools(tools)


def _check_message(message: Any, where: str) -> None:
    if not isinstance(message, dict):
        raise invalid(where, "must be an object with a `role`")
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:  # a dict or a list is not hashable
        shown = f" (got {role!r})" if role is not None else ""
        raise invalid(
            f"{where}.role",
            f"must be one of {', '.join(sorted(ROLES))}{shown}",
            code="invalid_value",
        )
    content = message.get("content")
    if role == "function":
        if content is not None and not isinstance(content, str):
            raise invalid(f"{where}.content", "must be a string or null for a function message")
        if not isinstance(message.get("name"), str):
            raise missing(f"{where}.name")
        return
    if content is None:
        # An assistant turn that only calls tools carries no content.
        if role == "assistant":
            _check_tool_calls(message.get("tool_calls"), f"{where}.tool_calls")
            return
        raise missing(f"{where}.content")
    if isinstance(content, list):
        _check_parts(content, PART_TYPES[role], role, f"{where}.content")
    elif not isinstance(content, str):
        raise invalid(
            f"{where}.content",
            f"must be a string or an array of content parts for a {role} message",
        )
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise missing(f"{where}.tool_call_id")
    if role == "assistant":
        _check_tool_calls(message.get("tool_calls"), f"{where}.tool_calls")
    elif message.get("tool_calls") not in (None, []):
        # Only the model calls tools; the proxy would store these as calls and crash on
        # them (an empty list, which some SDKs send on every message, means nothing).
        raise invalid(
            f"{where}.tool_calls", f"only assistant messages may carry tool calls, not {role}"
        )


def _check_parts(parts: list[Any], allowed: frozenset[str], role: str, where: str) -> None:
    for index, part in enumerate(parts):
        at = f"{where}[{index}]"
        if not isinstance(part, dict):
            raise invalid(at, "must be a content part object with a `type`")
        kind = part.get("type")
        if role == "assistant" and isinstance(kind, str) and kind not in _KNOWN_PARTS:
            # A provider's own part in an answer it gave (Mistral's `thinking`), which its
            # client resends as it came: passed on, for the upstream to judge.
            continue
        if not isinstance(kind, str) or kind not in allowed:
            raise bad_type(at, f"one of {', '.join(sorted(allowed))} in a {role} message", kind)
        key = _PAYLOAD_KEY[kind]
        if key not in part:
            raise missing(f"{at}.{key}")
        if kind in ("text", "refusal") and not isinstance(part[key], str):
            raise invalid(f"{at}.{key}", "must be a string")


def _check_tool_calls(tool_calls: Any, where: str) -> None:
    if tool_calls is None:
        return
    if not isinstance(tool_calls, list):
        raise invalid(where, "must be an array of tool calls")
    for index, call in enumerate(tool_calls):
        at = f"{where}[{index}]"
        if not isinstance(call, dict):
            raise invalid(at, "must be a tool call object")
        # The proxy reads the calls it stores: a call's payload must be what the API sends.
        key = "custom" if call.get("type") == "custom" else "function"
        payload = call.get(key)
        if payload is None:
            raise missing(f"{at}.{key}")
        if not isinstance(payload, dict):
            raise invalid(f"{at}.{key}", "must be an object with a `name`")
        if not isinstance(payload.get("name"), str):
            raise invalid(f"{at}.{key}.name", "must be a string")


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise invalid("tools", "must be an array of tool objects")
    for index, tool in enumerate(tools):
        at = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise invalid(at, "must be a tool object")
        kind = tool.get("type")
        if not isinstance(kind, str) or kind not in TOOL_TYPES:
            raise bad_type(at, "'function' or 'custom'", kind)
        spec = tool.get(kind)
        if spec is None:
            raise missing(f"{at}.{kind}")
        if not isinstance(spec, dict):
            raise invalid(f"{at}.{kind}", "must be an object with a `name`")
        name = spec.get("name")
        if name is None:
            raise missing(f"{at}.{kind}.name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{at}.{kind}.name", "must be a non-empty string")


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def invalid(param: str, what: str, *, code: str = "invalid_type") -> InvalidRequest:
    return InvalidRequest(f"Invalid '{param}': {what}.", param=param, code=code)


def bad_type(at: str, expected: str, kind: Any) -> InvalidRequest:
    got = f" (got {kind!r})" if kind is not None else ""
    return invalid(f"{at}.type", f"must be {expected}{got}", code="invalid_value")
