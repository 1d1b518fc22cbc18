"""Checking a Responses API request (`POST /v1/responses`) before the proxy reads it.

As for chat completions (validation.py), only what the proxy relies on is checked, with
OpenAI's 400 naming the `param` (`input[3].content[0].text`); unknown fields, unknown item
types and `reasoning` items pass through untouched.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import InvalidRequest
from proxy.http.resent import Dialect, Remembered, ResentBodies
from proxy.http.validation import (
    bad_type,
    invalid,
    missing,
    parse_json_object,
    require_model,
)
from proxy.loop.prefix_cache import Fingerprinted
from proxy.loop.responses_input import (
    check_input_items,
    ends_a_turn,
    extend_messages,
    input_messages,
)

ROLES = ("assistant", "developer", "system", "user")
_ROLE_SET = frozenset(ROLES)
_INPUT_PARTS = frozenset({"input_text", "input_image", "input_file", "input_audio"})
_ASSISTANT_PARTS = frozenset({"output_text", "refusal", "input_text"})
_TEXT_PARTS = frozenset({"input_text", "output_text"})
_FORMATS = ("json_object", "json_schema", "text")
_TOOL_CHOICES = ("auto", "none", "required")
MIN_OUTPUT_TOKENS = 16
_METADATA_KEYS = 16
_METADATA_KEY_CHARS = 64
_METADATA_VALUE_CHARS = 512
# Where a Responses request keeps its history (proxy.http.resent).
RESENT_INPUT = Dialect("input", "instructions", ends_a_turn)


def parse_responses_request(
    raw: bytes, convert: bool = True, resent: ResentBodies | None = None, tenant: str = ""
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """The request body, and its `instructions` and `input` as the chat messages the memory
    reads (proxy.loop.responses_input), made in the pass that checks the items; None
    instead of the messages when `convert` is false (a request the memory will not read).
    `resent`: the tenant's earlier requests, whose items a request that repeats them
    is not parsed for again (proxy.http.resent)."""
    if convert and resent is not None:
        continued = resent.parse(tenant, raw, _validate_continued)
        if continued is not None:
            return continued
    body = parse_json_object(raw)
    messages = validate_responses_request(body, convert)
    if resent is not None and messages is not None:
        resent.remember(tenant, raw, body, messages)
    return body, messages


def _validate_continued(earlier: Remembered, body: dict[str, Any]) -> Fingerprinted | None:
    """validate_responses_request for a body whose `input` holds only the items after
    `earlier`'s (checked before), in the same order; the messages of all its items."""
    _validate_before_input(body)
    messages = extend_messages(earlier.messages, earlier.items[-1], body["input"],
                               len(earlier.items), _check_item)
    _validate_after_input(body)
    return messages


def validate_responses_request(
    body: dict[str, Any], convert: bool = True
) -> list[dict[str, Any]] | None:
    _validate_before_input(body)
    messages = None
    if convert:
        messages = input_messages(body.get("instructions"), body.get("input"), _check_item)
    else:
        check_input_items(body.get("instructions"), body.get("input"), _check_item)
    _validate_after_input(body)
    return messages


def _validate_before_input(body: dict[str, Any]) -> None:
    require_model(body)
    for name in ("stream", "store", "background", "parallel_tool_calls"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise invalid(name, "must be a boolean")
    for name in ("previous_response_id", "instructions"):
        value = body.get(name)
        if value is not None and not isinstance(value, str | list if name == "instructions"
                                                else str):
            raise invalid(name, "must be a string")
    _check_input(body)


def _validate_after_input(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        _check_tools(tools)
    _check_tool_choice(body.get("tool_choice"))
    _check_max_output_tokens(body.get("max_output_tokens"))
    _check_text(body.get("text"))
    _check_metadata(body.get("metadata"))


def _check_input(body: dict[str, Any]) -> None:
    value = body.get("input")
    if value is None:
        if body.get("previous_response_id") is None and body.get("prompt") is None:
            raise missing("input")
        return
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise invalid("input", "must be a string or an array of input items")
    if not value and not any(body.get(name) for name in
                             ("previous_response_id", "prompt", "instructions", "conversation")):
        # Nothing to answer, as a chat request of no messages.
        raise invalid("input", "must contain at least one input item", code="empty_array")


def _check_item(where: str, index: int, item: Any) -> None:
    """One item of `input` (or of `instructions`); the plain text messages that make most
    of a resent history are not given here (input_messages takes them as they are). The
    param path (`input[3].content[0].text`) is built only for the error that names it."""
    if not isinstance(item, dict):
        raise invalid(_at(where, index), "must be an input item object")
    kind = item.get("type")
    if kind is None and "role" in item:
        kind = "message"
    if kind == "message":
        _check_message(item, where, index)
    elif kind == "function_call":
        for key in ("call_id", "name", "arguments"):
            if not isinstance(item.get(key), str):
                raise _string(_at(where, index, f".{key}"), item.get(key))
    elif kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise _string(_at(where, index, ".call_id"), item.get("call_id"))
        output = item.get("output")
        if output is None:
            raise missing(_at(where, index, ".output"))
        if not isinstance(output, str | list):
            raise invalid(_at(where, index, ".output"),
                          "must be a string or an array of content parts")
    elif not isinstance(kind, str):
        raise missing(_at(where, index, ".type"))
    # Every other item (reasoning, built-in tool calls and outputs, item references) is
    # the upstream's to judge; the proxy carries it as it came.


def _check_message(item: dict[str, Any], where: str, index: int) -> None:
    role = item.get("role")
    if not isinstance(role, str) or role not in _ROLE_SET:  # a list is not hashable
        shown = f" (got {role!r})" if role is not None else ""
        raise invalid(_at(where, index, ".role"), f"must be one of {', '.join(ROLES)}{shown}",
                      code="invalid_value")
    content = item.get("content")
    if content is None:
        raise missing(_at(where, index, ".content"))
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid(_at(where, index, ".content"),
                      "must be a string or an array of content parts")
    allowed = _ASSISTANT_PARTS if role == "assistant" else _INPUT_PARTS
    for part_index, part in enumerate(content):
        if not isinstance(part, dict):
            raise invalid(_part_at(where, index, part_index),
                          "must be a content part object with a `type`")
        kind = part.get("type")
        if not isinstance(kind, str) or kind not in allowed:  # a list is not hashable
            raise bad_type(_part_at(where, index, part_index),
                           f"one of {', '.join(sorted(allowed))} in a {role} message", kind)
        if kind in _TEXT_PARTS:
            if not isinstance(part.get("text"), str):
                raise _string(_part_at(where, index, part_index, ".text"), part.get("text"))
        elif kind == "refusal":
            if not isinstance(part.get("refusal"), str):
                raise _string(_part_at(where, index, part_index, ".refusal"),
                              part.get("refusal"))
        elif kind == "input_image" and not (
            isinstance(part.get("image_url"), str) or isinstance(part.get("file_id"), str)
        ):
            raise missing(_part_at(where, index, part_index, ".image_url"))


def _at(where: str, index: int, field: str = "") -> str:
    return f"{where}[{index}]{field}"


def _part_at(where: str, index: int, part_index: int, field: str = "") -> str:
    return f"{where}[{index}].content[{part_index}]{field}"


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise invalid("tools", "must be an array of tool objects")
    for index, tool in enumerate(tools):
        at = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise invalid(at, "must be a tool object")
        kind = tool.get("type")
        if not isinstance(kind, str) or not kind:
            raise missing(f"{at}.type")
        if kind == "function":
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise missing(f"{at}.name")
            parameters = tool.get("parameters")
            if parameters is not None and not isinstance(parameters, dict):
                raise invalid(f"{at}.parameters", "must be a JSON schema object")


def _check_tool_choice(choice: Any) -> None:
    if choice is None or choice in _TOOL_CHOICES:
        return
    if isinstance(choice, str):
        raise invalid("tool_choice", f"must be one of {', '.join(_TOOL_CHOICES)} or an object",
                      code="invalid_value")
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        raise invalid("tool_choice", "must be a string or an object with a `type`")
    if choice["type"] == "function" and not isinstance(choice.get("name"), str):
        raise missing("tool_choice.name")


def _check_max_output_tokens(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid("max_output_tokens", "must be an integer")
    if value < MIN_OUTPUT_TOKENS:
        raise InvalidRequest(
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_OUTPUT_TOKENS}, but got {value} instead.",
            param="max_output_tokens",
            code="integer_below_min_value",
        )


def _check_text(text: Any) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise invalid("text", "must be an object")
    fmt = text.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise invalid("text.format", "must be an object with a `type`")
    kind = fmt.get("type")
    if kind not in _FORMATS:
        raise bad_type("text.format", f"one of {', '.join(_FORMATS)}", kind)
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str) or not fmt["name"]:
            raise missing("text.format.name")
        if not isinstance(fmt.get("schema"), dict):
            raise missing("text.format.schema")


def _check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise invalid("metadata", "must be an object of string values")
    if len(metadata) > _METADATA_KEYS:
        raise invalid("metadata", f"must have at most {_METADATA_KEYS} keys",
                      code="object_above_max_properties")
    for key, value in metadata.items():
        if len(key) > _METADATA_KEY_CHARS:
            raise invalid("metadata", f"keys must be at most {_METADATA_KEY_CHARS} characters",
                          code="invalid_value")
        if not isinstance(value, str) or len(value) > _METADATA_VALUE_CHARS:
            raise invalid(f"metadata.{key}",
                          f"must be a string of at most {_METADATA_VALUE_CHARS} characters")


def _string(param: str, value: Any) -> InvalidRequest:
    return missing(param) if value is None else invalid(param, "must be a string")
