"""The scripted model behind a Responses API upstream (`POST /v1/responses`), stateless.

    model = ResponsesModel(agent(LOCKER))            # the same policies as ScriptedModel
    router.post(f"{UPSTREAM}/responses").mock(side_effect=model)
    FakeUpstream(model.fake_upstream_handler)        # or served on loopback

The model reads a Responses request by turning its input into chat messages (its own small
reading, independent of the proxy's adapter) and lets the policy decide; it answers as
OpenAI does: a Response body, or for `stream: true` the event stream of EVENTS.md
(`event:` lines, sequence numbers from 0, `response.completed` with the whole Response).
It keeps no state: a request that names `previous_response_id` or `conversation` is
refused, as an upstream would refuse an id it never issued.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx

from proxy.tokens import counter_for_model
from tests.loop.scripted import (
    CREATED,
    Calls,
    Decision,
    Fail,
    Pieces,
    Policy,
    Step,
    StreamError,
    _action,
    pieces,
    read_request,
)
from tests.support.fake_upstream import RecordedRequest, Reply


def chat_view(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses request as a chat body (text, calls and results only)."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
    for item in items:
        kind = item.get("type") or "message"
        if kind == "message":
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            messages.append({"role": item["role"], "content": content})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": item["output"]})
    tools = [{"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
             for t in body.get("tools") or () if t.get("type") == "function"]
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if tools:
        chat["tools"] = tools
    return chat


class ResponsesModel:
    def __init__(self, policy: Policy, *, model: str = "gpt-4o-mini-2024-07-18",
                 reasoning: bool = False) -> None:
        self.policy = policy
        self.model = model
        self.reasoning = reasoning  # a reasoning item opens every answer
        self.requests: list[dict[str, Any]] = []
        self.steps: list[Step] = []
        self.queued: list[Decision] = []
        self._ids = itertools.count(1)

    def queue(self, *decisions: Decision) -> None:
        self.queued.extend(decisions)

    @property
    def actions(self) -> list[str]:
        return [step.action for step in self.steps]

    def usages(self) -> list[dict[str, Any]]:
        return [s.usage for s in self.steps if s.usage is not None]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        status, headers, content = self.respond(json.loads(request.content))
        if isinstance(content, list):
            return httpx.Response(status, headers=headers, stream=Pieces(content))
        return httpx.Response(status, headers=headers, content=content)

    def fake_upstream_handler(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != "/v1/responses":
            return Reply.json({"error": {"message": "unexpected route", "type": "not_found",
                                         "param": None, "code": None}}, status=404)
        status, headers, content = self.respond(request.json())
        if isinstance(content, list):
            return Reply(status, headers, chunks=content)
        return Reply(status, headers, content)

    def respond(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes | list[bytes]]:
        self.requests.append(body)
        json_type = {"content-type": "application/json"}
        if body.get("previous_response_id") or body.get("conversation"):
            error = {"error": {"message": "this upstream keeps no state", "param":
                               "previous_response_id", "type": "invalid_request_error",
                               "code": "previous_response_not_found"}}
            return 400, json_type, _dumps(error)
        decision = self.queued.pop(0) if self.queued else self.policy(
            read_request(chat_view(body)))
        stream = body.get("stream") is True
        if isinstance(decision, Fail):
            self.steps.append(Step("fail", decision, None, stream))
            error = {"error": {"message": decision.message, "type": decision.error_type,
                               "param": None, "code": decision.code}}
            return decision.status, json_type, _dumps(error)
        usage = self._usage(body, decision)
        self.steps.append(Step(_action(decision), decision, usage, stream))
        number = next(self._ids)
        if stream:
            events = list(self._events(body, decision, usage, number))
            return 200, {"content-type": "text/event-stream; charset=utf-8"}, events
        return 200, json_type, _dumps(self._response(body, decision, usage, number))

    def _usage(self, body: dict[str, Any], decision: Decision) -> dict[str, Any]:
        prompt = counter_for_model(self.model).request(chat_view(body))
        if isinstance(decision, Calls):
            completion = 9 + sum(len(json.dumps(c.arguments)) // 4 for c in decision.calls)
        else:
            completion = 5 + len(getattr(decision, "text", "").split())
        return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + completion}

    def _items(self, decision: Decision, number: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if self.reasoning:
            items.append({"id": f"rs_{number:03d}", "type": "reasoning", "summary": [],
                          "encrypted_content": f"opaque-{number}"})
        text = getattr(decision, "text", "")
        if text:
            items.append({"id": f"msg_{number:03d}", "type": "message", "status": "completed",
                          "content": [{"type": "output_text", "annotations": [],
                                       "logprobs": [], "text": text}], "role": "assistant"})
        for i, call in enumerate(decision.calls if isinstance(decision, Calls) else ()):
            items.append({"id": f"fc_{number:03d}_{i}", "type": "function_call",
                          "status": "completed", "arguments": json.dumps(call.arguments),
                          "call_id": f"call_{number:03d}_{i}", "name": call.name})
        return items

    def _response(self, body: dict[str, Any], decision: Decision, usage: dict[str, Any] | None,
                  number: int, *, status: str = "completed",
                  output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "id": f"resp_scripted{number:03d}", "object": "response", "created_at": CREATED,
            "status": status, "background": False, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens":
            body.get("max_output_tokens"), "model": self.model,
            "output": self._items(decision, number) if output is None else output,
            "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None}, "store": body.get("store", True),
            "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": body.get("tools") or [], "top_p": 1.0, "truncation": "disabled",
            "usage": usage, "user": None, "metadata": body.get("metadata") or {},
        }

    def _events(self, body: dict[str, Any], decision: Decision, usage: dict[str, Any],
                number: int) -> Iterator[bytes]:
        sequence = itertools.count()

        def event(data: dict[str, Any]) -> bytes:
            data = {"type": data["type"], "sequence_number": next(sequence), **data}
            return f"event: {data['type']}\ndata: ".encode() + _dumps(data) + b"\n\n"

        opening = self._response(body, decision, None, number, status="in_progress", output=[])
        yield event({"type": "response.created", "response": opening})
        yield event({"type": "response.in_progress", "response": opening})
        items = self._items(decision, number)
        for index, item in enumerate(items):
            where = {"item_id": item["id"], "output_index": index}
            if item["type"] == "reasoning":
                yield event({"type": "response.output_item.added", "output_index": index,
                             "item": {**item, "encrypted_content": "added-differs"}})
            elif item["type"] == "message":
                yield event({"type": "response.output_item.added", "output_index": index,
                             "item": {**item, "status": "in_progress", "content": []}})
                part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
                yield event({"type": "response.content_part.added", **where,
                             "content_index": 0, "part": part})
                text = item["content"][0]["text"]
                for piece in pieces(text, 4):
                    yield event({"type": "response.output_text.delta", **where,
                                 "content_index": 0, "delta": piece, "logprobs": [],
                                 "obfuscation": "xyz"})
                if isinstance(decision, StreamError):
                    yield event({"type": "error", "error": {
                        "type": "server_error", "code": decision.code,
                        "message": decision.message, "param": None}})
                    failed = self._response(body, decision, None, number, status="failed",
                                            output=[])
                    failed["error"] = {"code": decision.code, "message": decision.message}
                    yield event({"type": "response.failed", "response": failed})
                    return
                yield event({"type": "response.output_text.done", **where, "content_index": 0,
                             "text": text, "logprobs": []})
                yield event({"type": "response.content_part.done", **where,
                             "content_index": 0, "part": {**part, "text": text}})
            else:
                yield event({"type": "response.output_item.added", "output_index": index,
                             "item": {**item, "status": "in_progress", "arguments": ""}})
                for piece in pieces(item["arguments"], 3):
                    yield event({"type": "response.function_call_arguments.delta", **where,
                                 "delta": piece, "obfuscation": "abc"})
                yield event({"type": "response.function_call_arguments.done", **where,
                             "arguments": item["arguments"]})
            yield event({"type": "response.output_item.done", "output_index": index,
                         "item": item})
        yield event({"type": "response.completed",
                     "response": self._response(body, decision, usage, number)})


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()

