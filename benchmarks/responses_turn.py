"""Latency of a memory-active Responses API turn against a chat-completions one, same run.

The app runs in-process (ASGI, no sockets) with an upstream that answers at once (a chat
completion on /chat/completions, a Response on /responses), so what is timed is the
proxy's own work. Three conversations of N turns, one per arm, go on by one question per
request, the arms interleaved request by request so that a noisy machine slows them alike
(in one order; `--order rotate` rotates it each request, to see whether the arm that always
comes right after the chat arm pays for what that one leaves behind: measured, it does not
change the Responses/chat ratio, README Results):
- chat: POST /v1/chat/completions resending the whole history (as chat apps do);
- responses: POST /v1/responses resending the whole history as input items;
- chained: POST /v1/responses sending only the new question with `previous_response_id`.
Reported: p50/p99 per arm, and the ratio of each Responses arm's p50 to the chat arm's
(1.0: no more latency than a chat turn), plus a pass-through arm per dialect
(`X-VM-Mode: off`), and what the memory adds in each dialect (p50 less its pass-through's
p50, as benchmarks/vm_turn.py) with the ratio of the two.

The Responses arms resend their history as a client of that API does (`--history items`):
each answer a message item as the API gave it. `--history plain` sends every turn as a
plain `{"role", "content"}` item, as this benchmark did before: a lighter body than any
real client's, which made the Responses turn look cheaper than it is. The chat arms resend
plain `{"role", "content"}` answers, as most chat apps do (`--chat-history plain`), or the
answers as the chat API gives them, with `refusal` and `annotations` (`--chat-history
api`, as a client resending the openai SDK's message objects does).

`--stream`: every arm streams, the upstream too (chat chunks; the Responses API's events,
`response.created` to `response.completed`), and the client assembles each answer from the
stream as the SDKs do (its text, or the Response of `response.completed`) to resend it.

The garbage collector is set as `vm-proxy serve` sets it (proxy.cli.settle_heap), as in
benchmarks/vm_turn.py, or left at Python's defaults with `--default-gc` (how this
benchmark ran before: a Responses history parses into more containers than a chat one,
so more of its cost was collections that `serve` does not make).

    python benchmarks/responses_turn.py [--turns 1000] [--requests 60] [--store memory://]
    python benchmarks/responses_turn.py --json benchmarks/results/responses_turn.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

# This checkout's code, not the installed one: run from another worktree, the script
# measures that worktree.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy import create_app  # noqa: E402
from proxy.cli import settle_heap  # noqa: E402
from proxy.config import load_settings  # noqa: E402
from proxy.store import open_store  # noqa: E402

TOPICS = ["gardening", "taxes", "rust lifetimes", "sourdough", "cycling", "chess openings",
          "postgres vacuum", "jazz harmony", "kubernetes", "tea", "orbital mechanics", "knitting"]
ARMS = ("chat", "responses", "chained", "chat_off", "responses_off")


def conversation(turns: int, arm: str) -> list[dict[str, Any]]:
    """System prompt and `turns` exchanges; each arm its own words (no shared pages)."""
    system = f"You are a helpful assistant ({arm})."
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for i in range(turns):
        topic = TOPICS[i % len(TOPICS)]
        messages.append({"role": "user", "content": f"[{arm}] Question {i} about {topic}: what "
                         f"should I know about {topic} when starting out, case {i * 7 % 101}?"})
        messages.append({"role": "assistant", "content": f"For {topic}, start small: the first "
                         f"thing is practice, the second is patience (note {i}). Keep notes on "
                         f"what worked and revisit them weekly."})
    return messages


_CHAT = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Noted.",
                                         "refusal": None, "annotations": []},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})
_COUNTER = iter(range(10**9))


def upstream(request: httpx.Request) -> httpx.Response:
    streamed = orjson.loads(request.content).get("stream") is True
    if request.url.path.endswith("/chat/completions"):
        if streamed:
            return _events(_chat_chunks())
        content = _CHAT
    else:
        response = _response(next(_COUNTER))
        if streamed:
            return _events(_response_events(response))
        content = orjson.dumps(response)
    return httpx.Response(200, content=content, headers={"content-type": "application/json"})


def _response(number: int) -> dict[str, Any]:
    return {
        "id": f"resp_bench{number}", "object": "response", "created_at": 1,
        "status": "completed", "model": "gpt-4o-2024-08-06",
        "output": [{"id": f"msg_bench{number}", "type": "message", "status": "completed",
                    "role": "assistant", "content": [
                        {"type": "output_text", "text": "Noted.", "annotations": []}]}],
        "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": 12}}


def _events(events: list[dict[str, Any]]) -> httpx.Response:
    """An SSE stream of `events` (chat chunks, or Responses events named by their type)."""
    lines = [(f"event: {e['type']}\n" if "type" in e else "") + "data: "
             + orjson.dumps(e).decode() + "\n\n" for e in events]
    if "type" not in events[0]:
        lines.append("data: [DONE]\n\n")
    return httpx.Response(200, stream=_Streamed("".join(lines).encode()),
                          headers={"content-type": "text/event-stream"})


class _Streamed(httpx.AsyncByteStream):
    """A body sent as a stream (a relay reads it chunk by chunk, as from a socket)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body


def _chat_chunks() -> list[dict[str, Any]]:
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-2024-08-06"}
    deltas = [({"role": "assistant", "content": ""}, None), ({"content": "Noted."}, None),
              ({}, "stop")]
    chunks = [{**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
              for delta, finish in deltas]
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    return [*chunks, {**head, "choices": [], "usage": usage}]


def _response_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The events the Responses API streams for `response`: one message of one text."""
    item = response["output"][0]
    part = item["content"][0]
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    events = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**item, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
        {"type": "response.output_text.delta", **at, "delta": part["text"]},
        {"type": "response.output_text.done", **at, "text": part["text"]},
        {"type": "response.content_part.done", **at, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": response},
    ]
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def _sse_data(text: str) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE stream's `data:` lines."""
    return [orjson.loads(line[5:]) for line in text.splitlines()
            if line.startswith("data:") and line[5:].strip() != "[DONE]"]


def said(text: str, number: int) -> dict[str, Any]:
    """An answer as the Responses API gives it and a client resends it."""
    return {"id": f"msg_hist{number}", "type": "message", "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


class Arm:
    def __init__(
        self, name: str, turns: int, history_form: str = "items", chat_form: str = "plain",
        stream: bool = False,
    ) -> None:
        self.name = name
        self.chat_form = chat_form
        self.stream = stream
        history = conversation(turns, name)
        if name.startswith("chat") and chat_form == "api":
            # Each answer as the chat API gives it (the recorded ones carry `refusal` and
            # `annotations`), resent as the openai SDK's message object is.
            history = [{**m, "refusal": None, "annotations": []}
                       if m["role"] == "assistant" else m for m in history]
        self.history = history
        self.latencies: list[float] = []
        self.sent = self.full = 0
        self.previous: str | None = None
        # The input items a Responses client resends (`history="items"`): its own messages
        # as plain `{"role", "content"}` items and each answer as the API gave it, a
        # message item of one output_text part (the openai SDK's `response.output`, the
        # Agents SDK's `to_input_item()`); `plain`: every turn a plain item, as this
        # benchmark sent before (a lighter request than any real client's).
        self.items: list[dict[str, Any]] = [
            said(m["content"], n) if m["role"] == "assistant" and history_form == "items"
            else {"role": m["role"], "content": m["content"]}
            for n, m in enumerate(history[1:])]

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.name.startswith("chat") else "/v1/responses"

    @property
    def headers(self) -> dict[str, str]:
        off = {"x-vm-mode": "off"} if self.name.endswith("_off") else {}
        return {"content-type": "application/json", **off}

    def body(self, question: str) -> bytes:
        streamed = {"stream": True} if self.stream else {}
        if self.name.startswith("chat"):
            self.history.append({"role": "user", "content": question})
            return orjson.dumps({"model": "gpt-4o", "messages": self.history, **streamed})
        if self.name == "chained" and self.previous is not None:
            return orjson.dumps({"model": "gpt-4o", "input": question,
                                 "previous_response_id": self.previous, **streamed})
        self.items.append({"role": "user", "content": question})
        return orjson.dumps({"model": "gpt-4o", "instructions": self.history[0]["content"],
                             "input": self.items, **streamed})

    def answered(self, response: httpx.Response) -> None:
        if self.stream:
            body = self._assembled(_sse_data(response.text))
        else:
            body = response.json()
        if self.name.startswith("chat"):
            message = body["choices"][0]["message"]
            self.history.append(message if self.chat_form == "api" else
                                {"role": message["role"], "content": message["content"]})
        else:
            self.previous = body["id"]
            self.items.extend(body["output"])
        self.sent = int(response.headers.get("x-vm-prompt-tokens", 0))
        self.full = int(response.headers.get("x-vm-prompt-tokens-full", 0))

    def _assembled(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """The body a streamed answer amounts to, as a client assembles it: the chat
        chunks' text, or the Response of `response.completed`."""
        if self.name.startswith("chat"):
            text = "".join(c["choices"][0]["delta"].get("content") or ""
                           for c in events if c.get("choices"))
            return {"choices": [{"message": {"role": "assistant", "content": text}}]}
        completed = [e for e in events if e.get("type") == "response.completed"]
        assert len(completed) == 1, events
        response: dict[str, Any] = completed[0]["response"]
        return response


async def run(
    turns: int, requests: int, store_url: str, budget: int, default_gc: bool = False,
    order: str = "fixed", history_form: str = "items", chat_form: str = "plain",
    stream: bool = False,
) -> dict[str, Any]:
    settings = load_settings(environ={}, overrides={
        "vm": {"context_budget": budget, "activate_above": budget // 2},
        "store": {"url": store_url},
        "upstream": {"base_url": "http://upstream.bench/v1"},
    })
    store = await open_store(store_url, cache_pages=settings.store.cache_pages)
    app = create_app(settings, upstream_transport=httpx.MockTransport(upstream), store=store)
    arms = [Arm(name, turns, history_form, chat_form, stream) for name in ARMS]
    if not default_gc:
        settle_heap()
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://proxy"
    ) as client:

        async def turn(arm: Arm, question: str) -> float:
            raw = arm.body(question)
            started = time.perf_counter()
            response = await client.post(arm.path, content=raw, headers=arm.headers)
            elapsed = (time.perf_counter() - started) * 1000.0
            assert response.status_code == 200, response.text
            arm.answered(response)
            return elapsed

        for arm in arms:  # the first request of a conversation stores its history
            await turn(arm, "Hello again.")
        for i in range(requests):
            # `rotate`: whether an arm that always runs right after another pays for the
            # work that one leaves behind (its deferred writes, the collections its garbage
            # sets off); it made no difference to the ratio (README Results).
            shift = i % len(arms) if order == "rotate" else 0
            for arm in arms[shift:] + arms[:shift]:
                arm.latencies.append(await turn(arm, f"Q {i}: and taxes?"))
    await store.close()
    out: dict[str, Any] = {"turns": turns, "requests": requests,
                           "store": store_url.split(":")[0],
                           "gc": "default" if default_gc else "serve", "order": order,
                           "history": history_form, "chat_history": chat_form,
                           "stream": stream}
    for arm in arms:
        latencies = sorted(arm.latencies)
        out[arm.name] = {"p50_ms": round(statistics.median(latencies), 2),
                         "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
                         "prompt_tokens_sent": arm.sent, "prompt_tokens_full": arm.full}
    for name in ("responses", "chained"):
        if name in out and "chat" in out:
            out[f"ratio_{name}_to_chat"] = round(out[name]["p50_ms"] / out["chat"]["p50_ms"], 3)
    # What the memory adds to a turn (as benchmarks/vm_turn.py: p50 less the same requests'
    # pass-through p50), per dialect: a Responses request is the larger body, which its
    # pass-through reads and checks too.
    for name, off in (("chat", "chat_off"), ("responses", "responses_off")):
        out[name]["added_p50_ms"] = round(out[name]["p50_ms"] - out[off]["p50_ms"], 2)
    out["ratio_responses_added_to_chat_added"] = round(
        out["responses"]["added_p50_ms"] / out["chat"]["added_p50_ms"], 3)
    return out


def fresh(url: str) -> str:
    if url == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='responses-turn-')}/bench.db"
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--budget", type=int, default=8000)
    parser.add_argument("--store", action="append",
                        help="store URL(s); default memory:// and a fresh SQLite file")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--default-gc", action="store_true",
                        help="leave the garbage collector at Python's defaults (see above)")
    parser.add_argument("--order", choices=("fixed", "rotate"), default="fixed",
                        help="the arms in one order, or rotated request by request (see run)")
    parser.add_argument("--history", choices=("items", "plain"), default="items",
                        help="how the Responses arms' history holds the answers (see Arm)")
    parser.add_argument("--stream", action="store_true",
                        help="every arm streams (SSE), the upstream too")
    parser.add_argument("--chat-history", choices=("plain", "api"), default="plain",
                        help="the chat arms' answers resent as plain messages, or as the API"
                             " gave them (with `refusal` and `annotations`)")
    args = parser.parse_args()
    rows = [asyncio.run(run(args.turns, args.requests, fresh(url), args.budget, args.default_gc,
                            args.order, args.history, args.chat_history, args.stream))
            for url in args.store or ["memory://", "sqlite"]]
    for r in rows:
        arms = " | ".join(f"{name} p50 {r[name]['p50_ms']} p99 {r[name]['p99_ms']} ms"
                          for name in ARMS)
        print(f"{r['store']:>7} {r['turns']} turns gc {r['gc']} order {r['order']}"
              f" history {r['history']} chat {r['chat_history']}"
              f"{' stream' if r['stream'] else ''}: {arms}"
              f" | responses/chat"
              f" {r.get('ratio_responses_to_chat')} chained/chat"
              f" {r.get('ratio_chained_to_chat')} | added: chat"
              f" {r['chat']['added_p50_ms']} responses {r['responses']['added_p50_ms']} ms,"
              f" responses/chat {r['ratio_responses_added_to_chat_added']}")
    if args.json:
        payload = {
            "benchmark": "responses_turn",
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "settings": {"turns": args.turns, "requests": args.requests, "budget": args.budget},
            "rows": rows,
            "command": "python benchmarks/responses_turn.py " + " ".join(sys.argv[1:]),
            "note": "in-process ASGI app, upstream answering at once; arms interleaved request"
                    " by request; ratio = Responses arm p50 / chat arm p50 of the same run."
                    " Noisy 2-core machine shared with other work.",
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
