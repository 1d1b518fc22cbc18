"""A deterministic fake upstream: OpenAI chat completions from a tool-using "model" that
answers only from what it was shown.

Per request, unless a scripted reply is queued (history turns replay the generator's own
assistant messages), it reads the request (`reading.py`) and:
1. answers if the request offers no VM tools, or the answer is already visible;
2. otherwise calls `search_pages` with the user's question, once per turn;
3. then faults the most promising hit not already mapped at level 0 (target_level 0), one
   at a time, at most `max_faults` per turn, answering as soon as the answer is complete;
   "most promising" reads the hints as a careful model would (a statement of the asked
   thing over a mere mention, a revision over what it revises, a tool result over the
   request), or with `read_hints=False` simply follows the search order;
4. answers "I don't know." when the evidence never reached it.

Every exchange is logged with what the model saw, so a driver can tell whether the evidence
was visible when it answered. Use it in process (`transport()` for httpx) or serve
`asgi_app()` on loopback. `stream: true` is answered with proper SSE chunks.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.recall import grammar
from benchmarks.recall.answering import find_answer, hint_promise, phrase
from benchmarks.recall.counting import count_prompt, count_text
from benchmarks.recall.reading import read_request

CREATED = 1_700_000_000


@dataclass
class Exchange:
    """One upstream request and what the model did with it."""

    index: int
    mode: str  # "scripted" (a queued reply) or "agent"
    action: str  # reply | search | fault | answer
    prompt_tokens: int
    prompt_chars: int
    shared_prefix_chars: int
    message_count: int
    stream: bool = False
    vm_active: bool = False
    diverged_in: str = ""
    answer: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    visible: str = ""

    @property
    def prefix_share(self) -> float:
        return self.shared_prefix_chars / self.prompt_chars if self.prompt_chars else 0.0


def serialize_prompt(body: dict[str, Any]) -> str:
    """The prompt as a cache sees it: tool schemas first, then the messages in order."""
    return json.dumps(body.get("tools") or [], ensure_ascii=False) + json.dumps(
        body.get("messages", []), ensure_ascii=False
    )


def prompt_section(body: dict[str, Any], offset: int) -> str:
    """Which part of `serialize_prompt(body)` the character at `offset` falls in: tools,
    the VM message's head (client system prompt, rules), its context, its manifest, its
    tail, or the later messages (pinned turns, tool results, the question)."""
    tools = len(json.dumps(body.get("tools") or [], ensure_ascii=False))
    if offset < tools:
        return "tools"
    start = tools + 1
    for index, message in enumerate(body.get("messages", [])):
        text = json.dumps(message, ensure_ascii=False)
        if offset < start + len(text) + 2:
            if index > 0 or "<VM:" not in text:
                return "messages"
            inside = offset - start
            marks = [
                (text.find("<VM:CONTEXT>"), "context"),
                (text.find("<VM:MANIFEST_JSON>"), "manifest"),
                (text.find("</VM:CONTEXT>"), "after context"),
                (text.find("</VM:MANIFEST_JSON>"), "after manifest"),
            ]
            section = "vm head"
            for position, name in sorted(m for m in marks if m[0] >= 0):
                if inside >= position:
                    section = name
            return section
        start += len(text) + 2
    return "end"


def _has_vm_message(body: dict[str, Any]) -> bool:
    for message in body.get("messages", []):
        if message.get("role") not in ("system", "developer"):
            return False
        if "<VM:" in str(message.get("content")):
            return True
    return False


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix, by bisection on slice equality (C speed)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class ScriptedModel:
    def __init__(
        self, *, max_faults: int = 2, keep_visible: bool = True, read_hints: bool = True
    ) -> None:
        self.max_faults = max_faults
        self.read_hints = read_hints
        self.keep_visible = keep_visible
        self.log: list[Exchange] = []
        self._queue: deque[dict[str, Any]] = deque()
        self._previous_prompt = ""
        self._ids = itertools.count(1)

    def script(self, *replies: dict[str, Any]) -> None:
        """Queue assistant messages to return verbatim to the next requests."""
        self._queue.extend(replies)

    @property
    def scripted_pending(self) -> int:
        return len(self._queue)

    def respond(self, body: dict[str, Any]) -> tuple[dict[str, Any], Exchange]:
        """The assistant message for one request body, and its log entry."""
        prompt = serialize_prompt(body)
        shared = common_prefix(prompt, self._previous_prompt)
        self._previous_prompt, had_previous = prompt, bool(self._previous_prompt)
        exchange = Exchange(
            index=len(self.log),
            mode="agent",
            action="answer",
            prompt_tokens=count_prompt(body.get("messages", []), body.get("tools")),
            prompt_chars=len(prompt),
            shared_prefix_chars=shared,
            message_count=len(body.get("messages", [])),
            stream=bool(body.get("stream")),
            vm_active=_has_vm_message(body),
        )
        if had_previous and exchange.vm_active:
            exchange.diverged_in = prompt_section(body, shared)
        if self._queue:
            message = self._queue.popleft()
            exchange.mode, exchange.action = "scripted", "reply"
        else:
            message = self._decide(body, exchange)
        self.log.append(exchange)
        return message, exchange

    def _decide(self, body: dict[str, Any], exchange: Exchange) -> dict[str, Any]:
        reading = read_request(body)
        ask = grammar.parse_question(reading.question)
        answer = find_answer(ask, reading.passages)
        if self.keep_visible:
            exchange.visible = reading.visible_text
        vm = reading.vm_tools
        if vm and not answer.complete:
            if not reading.searched and "search_pages" in vm:
                return self._call(
                    exchange, vm["search_pages"], {"query": reading.question, "limit": 5}
                )
            if "page_fault" in vm and len(reading.faulted) < self.max_faults:
                for hit in self._fault_order(ask, reading.hits):
                    if reading.mapped.get(hit) == 0 or hit in reading.faulted:
                        continue
                    return self._call(
                        exchange, vm["page_fault"], {"page_id": hit, "target_level": 0}
                    )
        exchange.answer = phrase(ask, answer)
        return {"role": "assistant", "content": exchange.answer}

    def _fault_order(self, ask: grammar.Ask | None, hits: list[tuple[str, str]]) -> list[str]:
        """Search order, or (reading hints) the most promising hits first, ties in search
        order; the hint is never taken as the answer itself."""
        if not self.read_hints:
            return [page_id for page_id, _ in hits]
        ranked = sorted(enumerate(hits), key=lambda h: (-hint_promise(ask, h[1][1]), h[0]))
        return [page_id for _, (page_id, _) in ranked]

    def _call(self, exchange: Exchange, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        exchange.action = "search" if name.endswith("search_pages") else "fault"
        exchange.arguments = arguments
        call = {
            "id": f"call_vm{len(self.log):06d}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}

    # HTTP

    def completion(self, body: dict[str, Any]) -> tuple[dict[str, Any], Exchange]:
        message, exchange = self.respond(body)
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        completion_text = message.get("content") or json.dumps(message.get("tool_calls"))
        usage = {
            "prompt_tokens": exchange.prompt_tokens,
            "completion_tokens": count_text(completion_text),
            "total_tokens": exchange.prompt_tokens + count_text(completion_text),
        }
        payload = {
            "id": f"chatcmpl-scripted-{next(self._ids)}",
            "object": "chat.completion",
            "created": CREATED,
            "model": body.get("model", "scripted"),
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": usage,
        }
        return payload, exchange

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return httpx.Response(
                404,
                json={
                    "error": {
                        "message": f"scripted model has no {request.url.path}",
                        "type": "invalid_request_error",
                    }
                },
            )
        body = json.loads(await request.aread())
        payload, _ = self.completion(body)
        if not body.get("stream"):
            # A stream, not `json=`: httpx pre-reads `content`, and a proxy that relays the
            # raw stream (aiter_raw) would find it consumed.
            data = json.dumps(payload).encode()
            return httpx.Response(
                200, headers={"content-type": "application/json"}, stream=httpx.ByteStream(data)
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream; charset=utf-8"},
            content=_sse(payload, include_usage),
        )

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def asgi_app(self) -> Any:
        """A Starlette app serving the same model, for a loopback server."""
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, StreamingResponse
        from starlette.routing import Route

        async def completions(request: Request) -> Any:
            body = await request.json()
            payload, _ = self.completion(body)
            if not body.get("stream"):
                return JSONResponse(payload)
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(_sse(payload, include_usage), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def sse_chunks(payload: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A completion as OpenAI stream chunks: role, deltas, finish, optional usage."""
    base = {
        "id": payload["id"],
        "object": "chat.completion.chunk",
        "created": payload["created"],
        "model": payload["model"],
    }
    extra = {"usage": None} if include_usage else {}
    choice = payload["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }

    chunks = [chunk({"role": "assistant", "content": "" if message.get("content") else None})]
    if message.get("content"):
        text = message["content"]
        step = max(1, len(text) // 3)
        chunks += [chunk({"content": text[i : i + step]}) for i in range(0, len(text), step)]
    for index, call in enumerate(message.get("tool_calls") or []):
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        arguments = call["function"]["arguments"]
        step = max(1, len(arguments) // 3)
        chunks += [
            chunk(
                {
                    "tool_calls": [
                        {"index": index, "function": {"arguments": arguments[i : i + step]}}
                    ]
                }
            )
            for i in range(0, len(arguments), step)
        ]
    chunks.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": payload["usage"]})
    return chunks


async def _sse(payload: dict[str, Any], include_usage: bool) -> AsyncIterator[bytes]:
    for item in sse_chunks(payload, include_usage):
        yield b"data: " + json.dumps(item, separators=(",", ":")).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"
