"""What a Responses client receives from a memory turn: one Response over all the loop's
upstream calls, with the proxy's own id, the output items the client may see (never a VM
call), the echo of the client's own request (its tools, not the VM tools; its
instructions, not the packed prompt) and the usage summed over the loop."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.loop.citations import strip_citations
from proxy.upstream.assemble import AssembledMessage
from proxy.upstream.responses_format import item_type

# Fields of the Response object that echo the request: the client's values, not the
# upstream's (which echo the packed request).
_ECHOED_DEFAULTS: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "store": True,
    "tool_choice": "auto",
    "tools": [],
    "metadata": {},
}
def _skeleton() -> dict[str, Any]:
    """A Response object's fields in OpenAI's order, for one the proxy writes whole (chat)."""
    return {
        "id": "", "object": "response", "created_at": 0, "status": "completed",
        "background": False, "error": None, "incomplete_details": None,
        "instructions": None, "max_output_tokens": None, "model": "", "output": [],
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": None,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": None, "truncation": "disabled", "usage": None, "user": None,
        "metadata": {},
    }


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def response_object(
    request: Mapping[str, Any],
    upstream: Mapping[str, Any] | None,
    *,
    response_id: str,
    created_at: int,
    status: str,
    output: Sequence[Mapping[str, Any]],
    usage: Mapping[str, Any] | None,
    error: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The client's Response: the upstream's object (or a skeleton) with the proxy's id,
    the client's echoed fields, `output`, `usage` and `status`."""
    obj = dict(upstream) if upstream else _skeleton()
    obj["id"] = response_id
    obj["object"] = "response"
    obj["created_at"] = created_at
    obj["status"] = status
    if not obj.get("model"):
        obj["model"] = request.get("model")
    for name, default in _ECHOED_DEFAULTS.items():
        value = request.get(name)
        obj[name] = default if value is None else value
    if upstream is None and isinstance(request.get("text"), Mapping):
        obj["text"] = request["text"]
    obj["output"] = [dict(item) for item in output]
    obj["usage"] = None if usage is None else dict(usage)
    obj["error"] = None if error is None else {"code": error.get("code"),
                                               "message": error.get("message")}
    if status != "incomplete":
        obj["incomplete_details"] = None
    return obj


def visible_items(
    items: Sequence[Mapping[str, Any]], vm_names: Mapping[str, str]
) -> list[dict[str, Any]]:
    """An iteration's output without its VM calls."""
    return [dict(item) for item in items
            if not (item_type(item) == "function_call" and item.get("name") in vm_names)]


def stored_items(
    iterations: Sequence[Sequence[Mapping[str, Any]]],
) -> list[Mapping[str, Any]]:
    """The items kept as the answer: every iteration's visible items, less the reasoning of
    iterations that went on to VM calls (its following item, the call, is not kept, and the
    API refuses a reasoning item without it)."""
    last = len(iterations) - 1
    return [item for i, items in enumerate(iterations) for item in items
            if i == last or item_type(item) != "reasoning"]


def strip_item_citations(
    item: dict[str, Any], cited: list[str], *, citations: bool = True
) -> dict[str, Any]:
    """A message item with the page labels a model copied, and (`citations`) strict mode's
    `[ref: ...]` citations, taken out of its text."""
    if item_type(item) != "message" or not isinstance(item.get("content"), list):
        return item
    parts = []
    for part in item["content"]:
        if isinstance(part, Mapping) and part.get("type") == "output_text" and isinstance(
            part.get("text"), str
        ):
            text, ids = strip_citations(part["text"], citations=citations)
            cited.extend(ids)
            part = {**part, "text": text}
        parts.append(part)
    return {**item, "content": parts}


def message_item(text: str, item_id: str | None = None) -> dict[str, Any]:
    return {"id": item_id or new_id("msg"), "type": "message", "status": "completed",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [],
                         "text": text}], "role": "assistant"}


def call_item(call: Mapping[str, Any], item_id: str | None = None) -> dict[str, Any]:
    function = call.get("function") or {}
    return {"id": item_id or new_id("fc"), "type": "function_call", "status": "completed",
            "arguments": str(function.get("arguments") or "{}"),
            "call_id": str(call.get("id") or ""), "name": str(function.get("name") or "")}


def reasoning_item(text: str, item_id: str | None = None) -> dict[str, Any]:
    return {"id": item_id or new_id("rs"), "type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}]}


def chat_items(
    message: AssembledMessage, content: str | None, calls: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """A chat upstream's answer (one iteration) as Responses output items."""
    items: list[dict[str, Any]] = []
    if message.reasoning:
        items.append(reasoning_item(message.reasoning))
    if content:
        items.append(message_item(content))
    items.extend(call_item(call) for call in calls)
    return items


def now() -> int:
    return int(time.time())
