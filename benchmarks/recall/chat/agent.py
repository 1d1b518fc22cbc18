"""A deterministic fake upstream for the chat datasets: it replays the conversation's own
assistant messages while the history is fed, and answers each question with one of three
scripted behaviours, never reading the evidence to decide:

- question: `search_pages` with the whole question (limit 5), then `page_fault` the top
  three hits not already faulted this turn, at target_level 0, as parallel tool calls in
  one message; then it answers;
- keywords: the same for each of the question's keyword queries in turn, at most three
  faults per query;
- none: answers at once, from what the proxy packed on its own.

Every request is logged (`Request`): prompt tokens, tools offered, what the model did,
where the prompt first differs from the one before (for prefix share), and, for the
request it answered, the text it could answer from (`reading.read_request`: context
blocks, real messages and fault results; never the manifest or search hints).
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.recall.counting import count_prompt, count_text
from benchmarks.recall.reading import VM_TOOLS, read_request
from benchmarks.recall.scripted_model import CREATED, common_prefix, serialize_prompt

BEHAVIOURS = ("question", "keywords", "none")
SEARCH_LIMIT = 5
FAULTS_PER_SEARCH = 3
ANSWER = "Here is what I can tell from our conversation."


@dataclass
class Request:
    """One upstream request and what the model did with it."""

    index: int
    action: str  # reply | search | fault | answer
    prompt_tokens: int
    max_tokens: int
    tools: tuple[str, ...]
    prompt_chars: int
    shared_prefix_chars: int
    vm_active: bool
    problems: tuple[str, ...] = ()
    calls: list[dict[str, Any]] = field(default_factory=list)
    visible: str = ""

    @property
    def prefix_share(self) -> float:
        return self.shared_prefix_chars / self.prompt_chars if self.prompt_chars else 0.0


def exchange_problems(messages: list[dict[str, Any]]) -> list[str]:
    """How the prompt splits a tool exchange: a result without its call, or a call whose
    results do not all follow it."""
    problems: list[str] = []
    pending: set[str] = set()
    for message in messages:
        if message.get("role") == "tool":
            call_id = str(message.get("tool_call_id") or "")
            if call_id in pending:
                pending.discard(call_id)
            else:
                problems.append(f"tool result {call_id or '?'} without its call")
            continue
        if pending:
            problems.append("tool call without its result")
            pending = set()
        for call in message.get("tool_calls") or ():
            pending.add(str(call.get("id") or ""))
    if pending:
        problems.append("tool call without its result")
    return problems


def _vm_active(body: dict[str, Any]) -> bool:
    return any("<VM:" in str(m.get("content")) for m in body.get("messages", [])[:2])


def _turn(
    messages: list[dict[str, Any]], names: dict[str, str]
) -> tuple[list[list[str]], set[str], str]:
    """This turn's searches (hit ids of each, in order), the ids faulted, and the kind of
    the last tool result ("search", "fault" or "")."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    by_call: dict[str, tuple[str, dict[str, Any]]] = {}
    searches: list[list[str]] = []
    faulted: set[str] = set()
    last = ""
    for message in messages[last_user + 1 :]:
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except ValueError:
                arguments = {}
            by_call[str(call.get("id"))] = (str(function.get("name")), arguments)
        if message.get("role") != "tool":
            continue
        name, arguments = by_call.get(str(message.get("tool_call_id")), ("", {}))
        if name == names.get("search_pages"):
            last = "search"
            try:
                results = json.loads(str(message.get("content"))).get("results") or []
            except (ValueError, AttributeError):
                results = []
            searches.append([str(r["id"]) for r in results if isinstance(r, dict) and "id" in r])
        elif name == names.get("page_fault"):
            last = "fault"
            faulted.add(str(arguments.get("page_id", "")))
    return searches, faulted, last


class AgentModel:
    def __init__(self) -> None:
        self.log: list[Request] = []
        self.behaviour = "none"
        self.queries: tuple[str, ...] = ()
        self._queue: deque[dict[str, Any]] = deque()
        self._previous = ""
        self._ids = itertools.count(1)

    def script(self, reply: dict[str, Any]) -> None:
        """Queue an assistant message to return verbatim to the next request."""
        self._queue.append(reply)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def ask(self, behaviour: str, question: str, keywords: tuple[str, ...]) -> None:
        """How to answer the next question: `keywords` are its search queries."""
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        self.behaviour = behaviour
        self.queries = (question,) if behaviour == "question" else keywords

    def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages", [])
        prompt = serialize_prompt(body)
        request = Request(
            index=len(self.log),
            action="reply",
            prompt_tokens=count_prompt(messages, body.get("tools")),
            max_tokens=int(body.get("max_completion_tokens") or body.get("max_tokens") or 0),
            tools=tuple(t.get("function", {}).get("name", "") for t in body.get("tools") or ()),
            prompt_chars=len(prompt),
            shared_prefix_chars=common_prefix(prompt, self._previous),
            vm_active=_vm_active(body),
            problems=tuple(exchange_problems(messages)),
        )
        self._previous = prompt
        self.log.append(request)
        if self._queue:
            return self._queue.popleft()
        return self._decide(body, request)

    def _decide(self, body: dict[str, Any], request: Request) -> dict[str, Any]:
        names = {base: name for name in request.tools for base in VM_TOOLS
                 if name in (base, f"vm_{base}")}  # fmt: skip
        if self.behaviour != "none" and len(names) == len(VM_TOOLS):
            searches, faulted, last = _turn(body.get("messages", []), names)
            if last == "search":
                hits = [h for h in searches[-1] if h not in faulted][:FAULTS_PER_SEARCH]
                if hits:
                    arguments = [{"page_id": h, "target_level": 0} for h in hits]
                    return self._call(request, "fault", names["page_fault"], arguments)
            if len(searches) < len(self.queries):
                query = {"query": self.queries[len(searches)], "limit": SEARCH_LIMIT}
                return self._call(request, "search", names["search_pages"], [query])
        request.action = "answer"
        request.visible = read_request(body).visible_text
        return {"role": "assistant", "content": ANSWER}

    def _call(self, request: Request, action: str, name: str,
              arguments: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
        request.action, request.calls = action, arguments
        calls = [
            {
                "id": f"call_{request.index:05d}_{n}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for n, args in enumerate(arguments)
        ]
        return {"role": "assistant", "content": None, "tool_calls": calls}

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        message = self.respond(body)
        said = message.get("content") or json.dumps(message.get("tool_calls"))
        prompt = self.log[-1].prompt_tokens
        return {
            "id": f"chatcmpl-agent-{next(self._ids)}",
            "object": "chat.completion",
            "created": CREATED,
            "model": body.get("model", "agent"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": count_text(said),
                "total_tokens": prompt + count_text(said),
            },
        }

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            error = {"message": f"agent model has no {request.url.path}", "type": "not_found"}
            return httpx.Response(404, json={"error": error})
        body = json.loads(await request.aread())
        if body.get("stream"):
            error = {"message": "the agent model does not stream", "type": "invalid_request"}
            return httpx.Response(400, json={"error": error})
        data = json.dumps(self.completion(body)).encode()
        # a stream, not `json=`: a proxy that relays the raw stream must find it unread
        return httpx.Response(
            200, headers={"content-type": "application/json"}, stream=httpx.ByteStream(data)
        )

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)
