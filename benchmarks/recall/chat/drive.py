"""Runs a chat through the real proxy (in process) and through the baselines.

Proxy: `create_app(settings, upstream_transport=<agent model>)` with `vm.context_budget` =
the budget, a memory store, httpx over `ASGITransport`; a fresh app per behaviour, so one
behaviour's faults never warm the pages another is judged on. The history is fed as a
chat app sends it: full-history requests without `X-VM-Session` (each request is every
message so far; the model replies with the conversation's next assistant message), or,
with `append`, only the new messages under an `X-VM-Session` header. Each question is then
asked as the full history plus one user message, and judged on the last upstream request
it caused (the one the model answered from).

Baselines build the same question's prompt themselves (`packing.py`), and the prompts
they would send at each history turn, so their prefix share is measured the same way.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.recall.chat.agent import AgentModel, Request
from benchmarks.recall.chat.packing import BASELINES, Corpus, asked
from benchmarks.recall.chat.types import Chat, Question, judge, normal
from benchmarks.recall.chat.vector_cache import VectorCache
from benchmarks.recall.counting import MODEL
from benchmarks.recall.reading import read_request
from benchmarks.recall.scripted_model import common_prefix, serialize_prompt

# The local model the `onnx` embeddings runs use (others' data: read from there, never copied).
MODEL_DIR = Path(__file__).resolve().parents[4] / "shared" / "models" / "all-MiniLM-L6-v2-int8"


@dataclass
class Options:
    reply_tokens: int = 256
    mode: str = "strict"
    append: bool = False
    # The proxy's embeddings.provider: "off" (BM25 alone) or "onnx" (the model in MODEL_DIR).
    embeddings: str = "off"
    # embeddings.* settings of the onnx runs (e.g. fusion_k, fusion_weight): experiments.
    tuning: dict[str, Any] = field(default_factory=dict)
    # vm.* settings of every proxy run (e.g. expected_faults): experiments.
    vm_tuning: dict[str, Any] = field(default_factory=dict)
    # Where the texts' vectors are kept between runs (vector_cache.py); None: no cache.
    vector_cache: Path | None = None


def proxy_system(embeddings: str) -> str:
    """The system name of the proxy's rows: `proxy` with BM25 alone, `proxy+onnx` fused."""
    return "proxy" if embeddings == "off" else f"proxy+{embeddings}"


@dataclass
class QuestionRecord:
    dataset: str
    chat: str
    system: str
    behaviour: str
    budget: int
    kind: str
    question: str
    recalled: bool
    with_date: bool
    faults: int
    searches: int
    round_trips: int
    first_prompt_tokens: int
    max_request_tokens: int  # prompt + max_tokens, the largest of the question's requests
    tokens_sent: int
    full_tokens: int
    over_budget: int  # upstream requests whose prompt + max_tokens passed the budget
    split: int  # upstream requests that split a tool exchange
    leaked: bool  # a tool call reached the client
    notes: str = ""
    # positions of the evidence messages not visible (for per-question analysis)
    missed: list[int] = field(default_factory=list)


@dataclass
class FeedRecord:
    dataset: str
    chat: str
    system: str
    behaviour: str
    budget: int
    requests: int
    paged: int  # requests the proxy rebuilt (VM active)
    prefix_share: float | None  # mean over consecutive paged history prompts
    tokens_sent: int
    full_tokens: int
    max_request_tokens: int
    over_budget: int
    split: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def _feed_positions(chat: Chat) -> list[int]:
    return [p for p, m in enumerate(chat.messages) if p and m.get("role") == "assistant"]


def _settings(budget: int, mode: str, embeddings: str = "off",
              tuning: dict[str, Any] | None = None,
              vm_tuning: dict[str, Any] | None = None) -> Any:  # fmt: skip
    from proxy.config import load_settings

    vectors: dict[str, Any] = {"provider": embeddings}
    if embeddings == "onnx":
        vectors |= {"path": str(MODEL_DIR), **(tuning or {})}
    # VM_PROXY_EMBEDDINGS__* in the environment tune the embeddings runs (e.g. the fusion
    # weight); nothing else of the environment reaches the benchmark's proxy.
    tuning = {k: v for k, v in os.environ.items() if k.startswith("VM_PROXY_EMBEDDINGS__")}
    return load_settings(
        environ=tuning,
        overrides={
            "vm": {**(vm_tuning or {}), "context_budget": budget, "mode": mode},
            "store": {"url": "memory://"},
            "upstream": {"base_url": "http://agent.upstream/v1", "api_key": "sk-bench"},
            "embeddings": vectors,
        },
    )


async def run_proxy(
    chat: Chat, corpus: Corpus, budget: int, behaviour: str, options: Options
) -> tuple[list[QuestionRecord], FeedRecord]:
    from proxy import create_app

    model = AgentModel()
    settings = _settings(budget, options.mode, options.embeddings, options.tuning,
                         options.vm_tuning)  # fmt: skip
    app = create_app(settings, upstream_transport=model.transport())
    headers = {"Authorization": "Bearer sk-bench-client"}
    if options.append:
        headers["X-VM-Session"] = f"{chat.name}-{budget}-{behaviour}"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://proxy.test",
            timeout=600.0,
            headers=headers,
        ) as client,
    ):
        meaning = app.state.meaning
        cache = None
        if meaning is not None and options.vector_cache is not None:
            cache = _vector_cache(options.vector_cache, meaning.embedder.name)
            meaning.embedder.embed_now = cache.wrap(meaning.embedder.embed_now)
        feed = await _feed(client, model, chat, corpus, budget, behaviour, options)
        if meaning is not None:
            # The questions come once the history is embedded: the worker's real work on
            # every conversation behind its pages, waited for (not bypassed).
            started = time.perf_counter()
            await meaning.worker.catch_up()
            feed.notes.append(f"embedding catch-up after the history: "
                              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        records = []
        for question in chat.questions:
            records.append(
                await _ask(client, model, chat, corpus, budget, behaviour, options, question)
            )
        if cache is not None:
            cache.save()
        if meaning is not None:
            # A query embedding that failed or timed out leaves its turn to BM25 alone: a
            # run under load may then recall less, and must say so.
            for stage in ("query", "pages"):
                failed = app.state.metrics.value("vm_embeddings_failures_total",
                                                 {"stage": stage})  # fmt: skip
                if failed:
                    feed.notes.append(f"{failed:.0f} embedding failures ({stage}): "
                                      "those searches ran on words alone")  # fmt: skip
    return records, feed


_CACHES: dict[tuple[Path, str], VectorCache] = {}


def _vector_cache(folder: Path, model: str) -> VectorCache:
    key = (folder, model)
    if key not in _CACHES:
        _CACHES[key] = VectorCache(folder, model)
    return _CACHES[key]


def _body(messages: list[dict[str, Any]], reply_tokens: int) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages, "max_tokens": reply_tokens}


async def _feed(client: httpx.AsyncClient, model: AgentModel, chat: Chat, corpus: Corpus,
                budget: int, behaviour: str, options: Options) -> FeedRecord:  # fmt: skip
    started = time.perf_counter()
    full = corpus.full
    messages, known, notes, altered, full_sent = chat.messages, 0, [], 0, 0
    first = len(model.log)
    for position in _feed_positions(chat):
        model.script(messages[position])
        sent = messages[known:position] if options.append else messages[:position]
        response = await client.post("/v1/chat/completions", json=_body(sent, options.reply_tokens))
        if response.status_code != 200:
            raise RuntimeError(
                f"proxy answered {response.status_code} to the history request "
                f"ending at message {position}: {response.text[:300]}"
            )
        if model.pending:
            raise RuntimeError(f"the proxy did not call upstream for message {position}")
        for request in model.log[-1:]:
            if request.prompt_tokens + request.max_tokens > budget:
                kind = "paged" if request.vm_active else "passed through"
                notes.append(f"history request ending at message {position} ({kind}): prompt "
                             f"{request.prompt_tokens} + max_tokens {request.max_tokens} > "
                             f"budget {budget}")  # fmt: skip
        returned = response.json()["choices"][0]["message"]
        altered += (returned.get("content") or "") != messages[position]["content"]
        full_sent += full[position]
        known = position + 1
    if altered:
        notes.append(f"{altered} history replies came back altered")
    log = model.log[first:]
    return _feed_record(chat, proxy_system(options.embeddings), behaviour, budget, log, full_sent,
                        time.perf_counter() - started, notes)  # fmt: skip


def _feed_record(chat: Chat, system: str, behaviour: str, budget: int, log: list[Request],
                 full_sent: int, seconds: float, notes: list[str]) -> FeedRecord:  # fmt: skip
    paged = [r for r in log if r.vm_active] if system.startswith("proxy") else log
    pairs = [b.prefix_share for a, b in zip(paged, paged[1:], strict=False)
             if b.index == a.index + 1]  # fmt: skip
    return FeedRecord(
        dataset=chat.dataset, chat=chat.name, system=system, behaviour=behaviour,
        budget=budget, requests=len(log), paged=sum(r.vm_active for r in log),
        prefix_share=sum(pairs) / len(pairs) if pairs else None,
        tokens_sent=sum(r.prompt_tokens for r in log), full_tokens=full_sent,
        max_request_tokens=max((r.prompt_tokens + r.max_tokens for r in log), default=0),
        over_budget=sum(r.prompt_tokens + r.max_tokens > budget for r in log),
        split=sum(bool(r.problems) for r in log), seconds=seconds, notes=notes,
    )  # fmt: skip


async def _ask(client: httpx.AsyncClient, model: AgentModel, chat: Chat, corpus: Corpus,
               budget: int, behaviour: str, options: Options,
               question: Question) -> QuestionRecord:  # fmt: skip
    model.ask(behaviour, question.question, question.keywords)
    before = len(model.log)
    messages = [*chat.messages, asked(question.question)]
    response = await client.post("/v1/chat/completions", json=_body(messages, options.reply_tokens))
    log = model.log[before:]
    notes, leaked = "", False
    if response.status_code != 200 or not log:
        notes = f"proxy answered {response.status_code}: {response.text[:200]}"
    else:
        leaked = bool(response.json()["choices"][0]["message"].get("tool_calls"))
    return _record(chat, proxy_system(options.embeddings), behaviour, budget, question, corpus,
                   log, leaked, notes)  # fmt: skip


def _record(chat: Chat, system: str, behaviour: str, budget: int, question: Question,
            corpus: Corpus, log: list[Request], leaked: bool,
            notes: str = "") -> QuestionRecord:  # fmt: skip
    final = log[-1] if log else None
    visible = final.visible if final else ""
    verdict = judge(question, visible)
    shown = normal(visible)
    return QuestionRecord(
        dataset=chat.dataset, chat=chat.name, system=system, behaviour=behaviour,
        budget=budget, kind=question.kind, question=question.question,
        recalled=verdict.recalled, with_date=verdict.with_date,
        faults=sum(len(r.calls) for r in log if r.action == "fault"),
        searches=sum(r.action == "search" for r in log), round_trips=len(log),
        first_prompt_tokens=log[0].prompt_tokens if log else 0,
        max_request_tokens=max((r.prompt_tokens + r.max_tokens for r in log), default=0),
        tokens_sent=sum(r.prompt_tokens for r in log),
        full_tokens=corpus.full_tokens(question.question),
        over_budget=sum(r.prompt_tokens + r.max_tokens > budget for r in log),
        split=sum(bool(r.problems) for r in log), leaked=leaked, notes=notes,
        missed=[e.position for e in question.evidence if not e.seen_in(shown)],
    )  # fmt: skip


def run_baseline(
    name: str, chat: Chat, corpus: Corpus, budget: int, options: Options
) -> tuple[list[QuestionRecord], FeedRecord]:
    build = BASELINES[name]
    model = AgentModel()
    records = []
    for question in chat.questions:
        body = build(corpus, question.question, budget, options.reply_tokens)
        model.respond(body)
        model.log[-1].visible = read_request(body).visible_text
        records.append(_record(chat, name, "-", budget, question, corpus, model.log[-1:], False))
    return records, _baseline_feed(name, chat, corpus, budget, options)


def _baseline_feed(name: str, chat: Chat, corpus: Corpus, budget: int,
                   options: Options) -> FeedRecord:  # fmt: skip
    """The prompt the baseline would send at each history turn: the latest user message
    as the question, the messages before it as the history."""
    started = time.perf_counter()
    build, full, log = BASELINES[name], corpus.full, []
    previous, full_sent = "", 0
    for position in _feed_positions(chat):
        latest = chat.messages[position - 1]
        body = build(corpus, str(latest.get("content") or ""), budget, options.reply_tokens,
                     position - 1)  # fmt: skip
        prompt = serialize_prompt(body)
        request = Request(len(log), "reply", corpus.prompt_tokens(body), options.reply_tokens,
                          (), len(prompt), common_prefix(prompt, previous), False)  # fmt: skip
        previous = prompt
        log.append(request)
        full_sent += full[position]
    return _feed_record(chat, name, "-", budget, log, full_sent, time.perf_counter() - started,
                        [])  # fmt: skip
