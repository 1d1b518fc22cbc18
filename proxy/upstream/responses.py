"""Responses API replies read into the loop's assembled message, the output items kept.

`read_response` takes a non-stream body; `EventAccumulator` the events of one stream
(../shared/recorded/responses/EVENTS.md: every item opened by `output_item.added` and
closed by `output_item.done`; OpenRouter closes a reasoning item after the message that
followed it, so items are keyed by `output_index`; LM Studio sends a call's arguments only
in `.done`; an `error` event, or `response.failed`, ends a stream that went wrong). Both
give an `ItemsMessage`: an AssembledMessage whose calls are the output's function calls
(and the built-in tools' calls that need the client), whose text is its message items',
whose usage is the Responses usage as sent, and which keeps the items themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.errors import normalise_error_body
from proxy.upstream.assemble import AssembledMessage
from proxy.upstream.responses_format import (
    CALL_ID_TYPES,
    assistant_message,
    item_type,
    message_text,
)
from proxy.upstream.sse import SSEEvent

__all__ = ["EventAccumulator", "ItemsMessage", "items_message", "read_response"]

# Lifecycle events carrying the whole Response object.
LIFECYCLE = frozenset(("response.created", "response.queued", "response.in_progress",
                       "response.completed", "response.incomplete", "response.failed"))


@dataclass(slots=True)
class ItemsMessage(AssembledMessage):
    """An assembled Responses reply; `items` are its output items in output order."""

    items: list[dict[str, Any]] = field(default_factory=list)
    response: dict[str, Any] = field(default_factory=dict)  # the Response object, last seen
    status: str | None = None

    def to_message(self, *, include_reasoning: bool | None = None) -> dict[str, Any]:
        """The assistant message for the next upstream call: the items carried whole."""
        message = assistant_message(self.items)
        if self.items:
            message["vm_items"] = [dict(item) for item in self.items]
        return message


def items_message(
    items: list[dict[str, Any]],
    response: Mapping[str, Any],
    *,
    error: dict[str, Any] | None = None,
) -> ItemsMessage:
    calls: list[dict[str, Any]] = []
    for item in items:
        if item_type(item) in CALL_ID_TYPES:
            calls.extend(assistant_message([item]).get("tool_calls") or ())
    status = response.get("status")
    usage = response.get("usage")
    incomplete = status == "incomplete"
    finish = "tool_calls" if calls else ("length" if incomplete else "stop")
    created = response.get("created_at")
    return ItemsMessage(
        content=message_text(items),
        tool_calls=calls,
        finish_reason=None if error is not None else finish,
        upstream_finish_reason=status if isinstance(status, str) else None,
        usage=dict(usage) if isinstance(usage, dict) and usage else None,
        id=response.get("id") if isinstance(response.get("id"), str) else None,
        model=response.get("model") if isinstance(response.get("model"), str) else None,
        created=created if isinstance(created, int) else None,
        error=error,
        items=items,
        response=dict(response),
        status=status if isinstance(status, str) else None,
    )


def read_response(body: Mapping[str, Any]) -> ItemsMessage:
    """A non-stream Responses body (an error body gives a message with `error` set)."""
    error = body.get("error")
    output = body.get("output")
    if body.get("object") != "response" and not isinstance(output, list):
        problem = error if isinstance(error, dict) else {
            "message": "upstream response is not a Responses API response",
            "code": "invalid_response"}
        return items_message([], {}, error=_normalise(problem))
    items = [dict(i) for i in output or () if isinstance(i, dict)]
    failed = _normalise(error) if isinstance(error, dict) and error else None
    if body.get("status") == "failed" and failed is None:
        failed = _normalise({"message": "the upstream response failed"})
    return items_message(items, body, error=failed)


class EventAccumulator:
    """Feed the events of one Responses stream; `result()` at the end."""

    def __init__(self) -> None:
        self.response: dict[str, Any] = {}
        self.added: dict[int, dict[str, Any]] = {}  # output_index -> item as opened
        self.done: dict[int, dict[str, Any]] = {}  # output_index -> item as closed
        self._arguments: dict[int, list[str]] = {}
        self._texts: dict[tuple[int, int], list[str]] = {}
        self.error: dict[str, Any] | None = None
        self.finished = False

    def feed_event(self, event: SSEEvent) -> dict[str, Any] | None:
        """The event's JSON (None for comments, [DONE] and what is not a JSON object)."""
        if event.is_comment or event.is_done:
            return None
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            self._fail({"message": f"upstream stream malformed event: {event.data[:500]}"})
            return None
        if not isinstance(data, dict):
            return None
        if "type" not in data and event.event:
            data["type"] = event.event
        self.feed(data)
        return data

    def feed(self, data: Mapping[str, Any]) -> None:
        kind = data.get("type")
        index = data.get("output_index")
        if kind in LIFECYCLE:
            response = data.get("response")
            if isinstance(response, dict):
                self.response = response
            if kind in ("response.completed", "response.incomplete"):
                self.finished = True
            elif kind == "response.failed":
                failed = self.response.get("error")
                self._fail(failed if isinstance(failed, dict) and failed
                           else {"message": "the upstream response failed"})
        elif kind == "error" or (kind is None and isinstance(data.get("error"), dict)):
            nested = data.get("error")
            self._fail(nested if isinstance(nested, dict) else dict(data))
        elif not isinstance(index, int):
            return
        elif kind == "response.output_item.added" and isinstance(data.get("item"), dict):
            self.added[index] = dict(data["item"])
        elif kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            self.done[index] = dict(data["item"])
        elif kind == "response.function_call_arguments.delta":
            self._arguments.setdefault(index, []).append(str(data.get("delta") or ""))
        elif kind == "response.function_call_arguments.done":
            self._arguments[index] = [str(data.get("arguments") or "")]
        elif kind == "response.output_text.delta":
            key = (index, int(data.get("content_index") or 0))
            self._texts.setdefault(key, []).append(str(data.get("delta") or ""))

    def _fail(self, error: Mapping[str, Any]) -> None:
        if self.error is None:
            self.error = _normalise(error)
        self.finished = True

    def items(self) -> list[dict[str, Any]]:
        """The output: the final Response's, else each item as closed (or as opened and
        filled by its deltas, for a stream cut short), in output order."""
        final = self.response.get("output") if self.finished else None
        if isinstance(final, list) and final and len(final) >= len(self.done):
            return [dict(i) for i in final if isinstance(i, dict)]
        out: list[dict[str, Any]] = []
        for index in sorted({*self.added, *self.done}):
            out.append(self.item(index))
        return out

    def item(self, index: int) -> dict[str, Any]:
        """Item `index` as closed, else as opened and filled by its deltas."""
        if index in self.done:
            return self.done[index]
        item = dict(self.added.get(index) or {})
        if item_type(item) == "function_call" and index in self._arguments:
            item["arguments"] = "".join(self._arguments[index])
        elif item_type(item) == "message":
            parts = sorted((c, "".join(t)) for (i, c), t in self._texts.items() if i == index)
            item["content"] = [{"type": "output_text", "text": text, "annotations": []}
                               for _, text in parts]
        return item

    def result(self) -> ItemsMessage:
        return items_message(self.items(), self.response, error=self.error)


def _normalise(error: Mapping[str, Any]) -> dict[str, Any]:
    status = 500
    code = error.get("code")
    if isinstance(code, int) and 400 <= code < 600:
        status = code
    normalised = normalise_error_body(status, orjson.dumps({"error": dict(error)}))
    return dict(normalised["error"])
