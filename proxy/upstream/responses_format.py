"""The Responses API's shapes in the chat representation the memory core takes, and back.

The core stores and packs chat messages. A Responses conversation becomes chat messages
without losing what chat cannot say:
- `instructions` -> a leading system message, marked as such (`INSTRUCTIONS`): they hold
  for their request only (OpenAI does not carry a previous response's instructions over to
  the next), so a conversation's history is sent on with the current request's instead;
- a user/system/developer message item -> a message of that role (input_text -> text,
  input_image -> image_url, input_file -> file);
- consecutive assistant-side items (assistant messages, `function_call`, `reasoning`, the
  built-in tools' call items, anything unknown) -> ONE assistant message: the text of its
  message items joined by a blank line, its calls as `tool_calls` (id = `call_id`);
- `function_call_output` and the other `*_output` items -> tool messages.

Whatever the chat form cannot carry (reasoning items with their encrypted content, the ids
of an upstream's items, file ids, built-in tool items) rides along verbatim
under `ITEMS` ("vm_items") on the message, and `input_items` sends those items back as they
came. Chain hashes (proxy.vm.identity) read only the chat fields, so a client that resends
the items it was given lands on the pages the proxy stored for them.

Pure: no I/O. Used by the loop (requests: proxy.loop.responses_input walks a request's
items and converts them with these; answers) and the upstream readers (replies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

__all__ = [
    "INSTRUCTIONS",
    "ITEMS",
    "ItemCheck",
    "assistant_message",
    "chat_tool",
    "chat_usage",
    "function_tool",
    "input_items",
    "instructions_of",
    "is_instructions",
    "item_type",
    "message_text",
    "responses_usage",
    "role_message",
    "tool_message",
    "with_instructions",
]

ITEMS = "vm_items"
# Marks a message made of a request's `instructions` (True). Chain hashes and fingerprints
# do not read it: a resent history aligns as before; the stored message keeps it, so that
# a later request's history is sent without it (with_instructions).
INSTRUCTIONS = "vm_instructions"
# Items the client answers with an output item of its own (`<type>_output`).
CALL_ID_TYPES = frozenset(("function_call", "custom_tool_call", "computer_call",
                           "local_shell_call", "shell_call", "apply_patch_call"))
OUTPUT_TYPES = frozenset(("function_call_output", "custom_tool_call_output",
                          "computer_call_output", "local_shell_call_output",
                          "shell_call_output", "apply_patch_call_output",
                          "mcp_approval_response"))
# Tuples, not sets: a role that is a list (before validation) is not hashable.
_ROLES = ("user", "system", "developer")
_SYSTEM_ROLES = ("system", "developer")
# A request's validation of one item: (`input` or `instructions`, index, item); raises.
ItemCheck = Callable[[str, int, Any], None]
# Between the text of two message items of one assistant turn.
_ITEM_JOIN = "\n\n"


def item_type(item: Mapping[str, Any]) -> str:
    """An item's type; an item with a role and no type is a message (EasyInputMessage)."""
    kind = item.get("type")
    if isinstance(kind, str):
        return kind
    return "message" if kind is None and "role" in item else ""


# --- Responses items -> chat messages (a request's input: proxy.loop.responses_input) ------


def is_instructions(message: Mapping[str, Any]) -> bool:
    """Whether `message` was made of a request's `instructions`."""
    return message.get(INSTRUCTIONS) is True


def instructions_of(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A request's instructions among its messages (they lead them)."""
    found: list[dict[str, Any]] = []
    for message in messages:
        if not is_instructions(message):
            break
        found.append(dict(message))
    return found


def with_instructions(
    instructions: Sequence[Mapping[str, Any]], history: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """A stored `history` as one request sends it on: that request's `instructions` first
    and no earlier request's (a client's own system messages among its input stay, but
    for one saying what an instruction says: stored before instructions were marked)."""
    said = {str(m.get("content")) for m in instructions}
    return [*map(dict, instructions), *(
        dict(m) for m in history
        if not is_instructions(m)
        and not (m.get("role") in _SYSTEM_ROLES and str(m.get("content")) in said)
    )]


def assistant_message(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One assistant chat message for consecutive assistant-side items (also the proxy's
    own answer, so that it hashes as the client's resend of it will)."""
    # Items an upstream made (they have ids) go back as they came: a reasoning item is
    # tied to the ids of the items after it, and newer fields (a message's `phase`) are
    # the model's own. A client's plain `{"role": "assistant", "content": ...}` needs not.
    if len(items) == 1 and item_type(items[0]) == "message":
        # The turn of most resent output: one message item.
        only = items[0]
        text, refusal = _assistant_text(only.get("content"))
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if refusal:
            message["refusal"] = refusal
        if "id" in only:
            message[ITEMS] = [dict(only)]
        return message
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[dict[str, Any]] = []
    opaque = False
    for item in items:
        if "id" in item:
            opaque = True
        kind = item_type(item)
        if kind == "message":
            text, refusal = _assistant_text(item.get("content"))
            if text:
                texts.append(text)
            if refusal:
                refusals.append(refusal)
        elif kind == "function_call":
            calls.append(_call(item.get("call_id"), item.get("name"), item.get("arguments")))
        elif kind in CALL_ID_TYPES:
            opaque = True
            arguments = item.get("input") if kind == "custom_tool_call" else item.get("action")
            name = item.get("name") if kind == "custom_tool_call" else kind
            calls.append(_call(item.get("call_id"), name, arguments))
        else:
            opaque = True  # reasoning, built-in tool calls, item references, ...
    message = {"role": "assistant", "content": _ITEM_JOIN.join(texts) or None}
    if refusals:
        message["refusal"] = "".join(refusals)
    if calls:
        message["tool_calls"] = calls
    if opaque:
        message[ITEMS] = [dict(item) for item in items]
    return message


def _call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    return {"id": str(call_id or ""), "type": "function",
            "function": {"name": str(name or ""), "arguments": arguments}}


def _assistant_text(content: Any) -> tuple[str, str]:
    if isinstance(content, str):
        return content, ""
    if type(content) is list and len(content) == 1:
        # One `output_text` part: what a message item of the model's holds.
        part = content[0]
        if type(part) is dict and part.get("type") != "refusal":
            text = part.get("text")
            return (text if isinstance(text, str) else ""), ""
    texts: list[str] = []
    refusals: list[str] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "refusal":
            refusals.append(str(part.get("refusal") or ""))
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "".join(texts), "".join(refusals)


def role_message(item: Mapping[str, Any]) -> dict[str, Any]:
    role = str(item.get("role"))
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    parts: list[dict[str, Any]] = []
    exact = True
    for part in content if isinstance(content, list) else ():
        converted = _chat_part(part) if isinstance(part, Mapping) else None
        if converted is None:
            exact = False
            converted = {"type": "text", "text": f"[{part.get('type', 'part')}]"
                         if isinstance(part, Mapping) else ""}
        parts.append(converted)
    message: dict[str, Any] = {"role": role, "content": parts}
    if not exact:
        message[ITEMS] = [dict(item)]
    return message


def _chat_part(part: Mapping[str, Any]) -> dict[str, Any] | None:
    """A Responses content part as a chat content part, or None when chat has no equal."""
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and not part.get("file_url"):
        file = {k: part[k] for k in ("file_id", "file_data", "filename") if part.get(k)}
        return {"type": "file", "file": file} if file else None
    return None


def tool_message(item: Mapping[str, Any]) -> dict[str, Any]:
    output = item.get("output")
    kind = item_type(item)
    call_id = item.get("call_id") or item.get("approval_request_id") or ""
    message: dict[str, Any] = {"role": "tool", "tool_call_id": str(call_id),
                               "content": _output_text(output)}
    if kind != "function_call_output" or not isinstance(output, str):
        message[ITEMS] = [dict(item)]
    return message


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(str(p.get("text") or "") for p in output
                       if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return "" if output is None else orjson.dumps(output).decode()


def message_text(items: Iterable[Mapping[str, Any]]) -> str | None:
    """The text of the message items among `items`, as assistant_message joins it."""
    texts = [_assistant_text(i.get("content"))[0] for i in items if item_type(i) == "message"]
    return _ITEM_JOIN.join(t for t in texts if t) or None


# --- chat messages -> Responses input ------------------------------------------------------


def input_items(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Responses `input` for chat messages (the packed prompt): items carried under
    ITEMS go back as they came; the rest is converted."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if type(message) is dict and len(message) == 2:
            role, content = message.get("role"), message.get("content")
            if type(content) is str and (role in _ROLES or role == "assistant" and content):
                out.append(message)  # `{"role": ..., "content": "..."}` is an input item
                continue
        carried = message.get(ITEMS)
        if type(carried) is list and len(carried) == 1 and type(only := carried[0]) is dict:
            if item_type(only) != "reasoning":  # a lone reasoning item is not replayed
                out.append(dict(only))
            continue
        if isinstance(carried, list) and carried:
            out.extend(_replayable(carried))
            continue
        role = message.get("role")
        content = message.get("content")
        if role == "tool":
            out.append({"type": "function_call_output",
                        "call_id": str(message.get("tool_call_id") or ""),
                        "output": _output_text(content) if not isinstance(content, str)
                        else content})
        elif role == "assistant":
            text = _assistant_text(content)[0] if content is not None else ""
            if text:
                out.append({"role": "assistant", "content": text})
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                out.append({"type": "function_call", "call_id": str(call.get("id") or ""),
                            "name": str(function.get("name") or ""),
                            "arguments": str(function.get("arguments") or "{}")})
        else:
            out.append({"role": str(role), "content": _input_content(content)})
    return out


def _replayable(items: Sequence[Any]) -> list[dict[str, Any]]:
    """Carried items, less reasoning items that no longer precede another item (the API
    refuses a reasoning item "provided without its required following item")."""
    kept: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        if item_type(item) == "reasoning":
            following = items[i + 1] if i + 1 < len(items) else None
            if not isinstance(following, Mapping) or item_type(following) == "reasoning":
                continue
        kept.append(dict(item))
    return kept


def _input_content(content: Any) -> Any:
    if not isinstance(content, list):
        return "" if content is None else content
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "input_text", "text": str(part.get("text") or "")})
        elif kind == "image_url":
            image = part.get("image_url")
            image = image if isinstance(image, Mapping) else {"url": image}
            converted = {"type": "input_image", "image_url": str(image.get("url") or "")}
            converted["detail"] = str(image.get("detail") or "auto")
            parts.append(converted)
        elif kind == "file" and isinstance(part.get("file"), Mapping):
            parts.append({"type": "input_file", **part["file"]})
    return parts


# --- tools and usage -----------------------------------------------------------------------


def chat_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A Responses function tool in chat form."""
    function = {k: v for k, v in tool.items() if k != "type"}
    return {"type": "function", "function": function}


def function_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A chat function tool in Responses form."""
    function = tool.get("function")
    function = function if isinstance(function, Mapping) else {}
    return {"type": "function", **function}


def responses_usage(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A chat completion's usage in the Responses shape."""
    if usage is None:
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, Mapping) else 0
    reasoning = (completion_details.get("reasoning_tokens")
                 if isinstance(completion_details, Mapping) else 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached or 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning or 0},
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }


def chat_usage(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A Responses usage in the chat shape (for the loop's accounting and logs)."""
    if usage is None:
        return None
    prompt = usage.get("input_tokens") or 0
    completion = usage.get("output_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": usage.get("total_tokens") or prompt + completion}
