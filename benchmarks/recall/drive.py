"""Runs one conversation through the real proxy (in process) and through the baselines.

Proxy: `create_app(settings, upstream_transport=<scripted model>, store=...)` with
`vm.context_budget` = the budget, strict mode, a memory store; the client is httpx over
`ASGITransport`. History turns are fed with `X-VM-Session` sending only the new messages
of each request (server-side state, DESIGN.md section 2), and the scripted model replays the
generator's assistant message for each (queued in process: the side channel). Probes are
then asked as full resends of the history plus the question with the same session header:
each probe is a branch off the same history, never appended to it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx

from benchmarks.recall.baselines import BASELINES, History
from benchmarks.recall.counting import MODEL, count_prompt
from benchmarks.recall.metrics import (
    FeedStats,
    ProbeRecord,
    divergence_shares,
    judge,
    mean_prefix_share,
)
from benchmarks.recall.scripted_model import (
    Exchange,
    ScriptedModel,
    common_prefix,
    serialize_prompt,
)

# Prefix share and feed tokens are measured over this many final history turns, for every
# system alike (the proxy's first turns are pass-through until the prompt outgrows
# `vm.activate_above`).
FEED_WINDOW = 200


@dataclass
class ProxyOptions:
    mode: str = "strict"
    reply_tokens: int = 256
    stream_probes: int = 2
    append: bool = True
    read_hints: bool = True


def full_tokens(history: History, question: str) -> int:
    """What the whole history plus the question would cost as one prompt."""
    messages = history.messages
    asked = {"role": "user", "content": question}
    return count_prompt([messages[0], asked], history.conversation.tools) + sum(history.costs[1:])


def _full_prefix_tokens(history: History, end: int) -> int:
    return count_prompt([history.messages[0]], history.conversation.tools) + sum(
        history.costs[1:end]
    )


def run_baseline(
    name: str, history: History, budget: int, reply_tokens: int
) -> tuple[list[ProbeRecord], FeedStats]:
    conversation = history.conversation
    size = len(conversation.turns)
    build = BASELINES[name]
    model = ScriptedModel()
    records = []
    for probe in conversation.probes:
        body = build(history, probe.question, budget, reply_tokens)
        _, exchange = model.completion(body)
        records.append(
            judge(name, size, budget, probe, [exchange], full_tokens(history, probe.question))
        )
    return records, _simulated_feed(name, history, budget, reply_tokens)


def _simulated_feed(name: str, history: History, budget: int, reply_tokens: int) -> FeedStats:
    """The baseline's prompt at each of the last history turns, as a client would send it."""
    started = time.perf_counter()
    conversation, build = history.conversation, BASELINES[name]
    previous, shares, sent, full = "", [], 0, 0
    first = max(0, len(conversation.turns) - FEED_WINDOW)
    for number in range(first, len(conversation.turns)):
        turn = conversation.turns[number]
        question = str(history.messages[turn.start]["content"])
        end = turn.start if name == "truncation" else number
        body = build(history, question, budget, reply_tokens, end)
        prompt = serialize_prompt(body)
        if previous:
            shares.append(common_prefix(prompt, previous) / len(prompt))
        previous = prompt
        sent += count_prompt(body["messages"], body["tools"])
        full += _full_prefix_tokens(history, turn.start + 1)
    return FeedStats(
        name,
        len(conversation.turns),
        budget,
        len(conversation.turns) - first,
        sum(shares) / len(shares) if shares else 0.0,
        sent,
        full,
        time.perf_counter() - started,
    )


def proxy_settings(budget: int, mode: str) -> Any:
    from proxy.config import load_settings

    return load_settings(
        environ={},
        overrides={
            "vm": {"context_budget": budget, "mode": mode},
            "store": {"url": "memory://"},
            "upstream": {"base_url": "http://scripted.upstream/v1", "api_key": "sk-bench"},
        },
    )


async def run_proxy(
    history: History, budget: int, options: ProxyOptions | None = None, store: Any = None
) -> tuple[list[ProbeRecord], FeedStats]:
    from proxy import create_app

    options = options or ProxyOptions()
    conversation = history.conversation
    model = ScriptedModel(read_hints=options.read_hints)
    app = create_app(
        proxy_settings(budget, options.mode), upstream_transport=model.transport(), store=store
    )
    session = f"recall-{conversation.seed}-{len(conversation.turns)}-{budget}"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://proxy.test",
            timeout=600.0,
            headers={"X-VM-Session": session, "Authorization": "Bearer sk-bench-client"},
        ) as client,
    ):
        feed = await _feed(client, model, history, budget, options)
        records = [
            await _probe(client, model, history, budget, options, index, probe)
            for index, probe in enumerate(conversation.probes)
        ]
    return records, feed


def _request(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    reply_tokens: int,
    stream: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": messages,
        "tools": tools,
        "max_tokens": reply_tokens,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def _feed(
    client: httpx.AsyncClient,
    model: ScriptedModel,
    history: History,
    budget: int,
    options: ProxyOptions,
) -> FeedStats:
    """Sends every history turn; the proxy stores its own answers, so each request carries
    only what the proxy has not seen yet."""
    started = time.perf_counter()
    conversation, messages = history.conversation, history.messages
    window_start_turn = max(0, len(conversation.turns) - FEED_WINDOW)
    window_log, full, known, mismatches = 0, 0, 0, 0
    step = max(1000, len(conversation.turns) // 10)
    for number, turn in enumerate(conversation.turns):
        if number == window_start_turn:
            window_log = len(model.log)
        if number and number % step == 0:
            elapsed = time.perf_counter() - started
            print(f"    fed {number} turns in {elapsed:.0f}s", file=sys.stderr)
        for position in range(turn.start, turn.stop):
            if messages[position]["role"] != "assistant":
                continue
            model.script(messages[position])
            sent = messages[known:position] if options.append else messages[:position]
            response = await client.post(
                "/v1/chat/completions",
                json=_request(sent, conversation.tools, options.reply_tokens),
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"proxy answered {response.status_code} at message {position}: "
                    + response.text[:300]
                )
            if model.scripted_pending:
                raise RuntimeError(
                    f"the proxy did not call upstream exactly once at message {position}"
                )
            returned = response.json()["choices"][0]["message"]
            if (returned.get("content") or None) != (messages[position].get("content") or None):
                mismatches += 1
            if number >= window_start_turn:
                full += _full_prefix_tokens(history, position)
            known = position + 1
    window = model.log[window_log:]
    notes = f"{mismatches} replies came back altered" if mismatches else ""
    if not options.append:
        notes = "; ".join(filter(None, [notes, "history fed by full resend"]))
    return FeedStats(
        "proxy",
        len(conversation.turns),
        budget,
        len(conversation.turns) - window_start_turn,
        mean_prefix_share(window),
        sum(e.prompt_tokens for e in window),
        full,
        time.perf_counter() - started,
        notes,
        divergence_shares(window),
    )


async def _probe(
    client: httpx.AsyncClient,
    model: ScriptedModel,
    history: History,
    budget: int,
    options: ProxyOptions,
    index: int,
    probe: Any,
) -> ProbeRecord:
    conversation = history.conversation
    stream = index < options.stream_probes
    messages = [*history.messages, {"role": "user", "content": probe.question}]
    before = len(model.log)
    response = await client.post(
        "/v1/chat/completions",
        json=_request(messages, conversation.tools, options.reply_tokens, stream),
    )
    exchanges: list[Exchange] = model.log[before:]
    notes = ""
    if response.status_code != 200 or not exchanges:
        answer, notes = "", f"proxy answered {response.status_code}: {response.text[:200]}"
        exchanges = exchanges or [Exchange(-1, "none", "none", 0, 0, 0, 0)]
    elif stream:
        answer, problem = read_sse(response.text)
        notes = f"stream: {problem}" if problem else ""
    else:
        answer = response.json()["choices"][0]["message"].get("content") or ""
    return judge(
        "proxy",
        len(conversation.turns),
        budget,
        probe,
        exchanges,
        full_tokens(history, probe.question),
        answer=answer,
        notes=notes,
    )


def read_sse(text: str) -> tuple[str, str]:
    """The content of an SSE chat stream, and what is wrong with its framing ("" if nothing)."""
    content, roles, finishes, done, problems = [], 0, 0, False, []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                roles += "role" in delta
                content.append(delta.get("content") or "")
                finishes += choice.get("finish_reason") is not None
                if delta.get("tool_calls"):
                    problems.append("tool call leaked to the client")
    if roles != 1:
        problems.append(f"{roles} role chunks")
    if finishes != 1:
        problems.append(f"{finishes} finish chunks")
    if not done:
        problems.append("no [DONE]")
    return "".join(content), ", ".join(problems)
