"""Segment summaries, level-2 abstracts and claims written by a model (`vm.summarizer`), in
the background.

A turn whose ingest made segment summary pages (`seg_N`, extractive as ever, each keeping
claim ids for the model: proxy.vm.summary_pages.CLAIM_IDS) hands their ids to
`Summarizer.submit`, which only puts a job on a bounded queue: the client's answer never
waits for a summarizer call. One worker task takes the jobs in order; for each summary
page it
1. reads the page and the pages it covers (after the conversation lock is free once, so
   the append that stores them has finished);
2. checks what it spent on the conversation today against the call's worst case
   (`vm.summarizer_daily_tokens`);
3. asks the model: one chat completion through the proxy's upstream client, with the
   credential of the request that made the segment unless `upstream.api_key` is set
   (proxy.vm.summary_prompt: the prompt, and the checking of the answer);
4. stores the summary and abstracts over the extractive ones, and the claims under their
   kept ids (PageStore.put_pages): the next turn's working set uses them.
Step 4 leaves the conversation row alone: a turn in flight holds that row, and a write
bumping its version would cost the turn its answer's append (a deferred append would be
lost). For the same reason the day's spending is counted in this process, not in the
conversation state: a restart starts the day's count over, and replicas count apart.
Whatever fails leaves the extractive forms, with a log line and
`vm_summarizer_fallbacks_total{reason}`; nothing reaches the client. Jobs live in memory:
a restart loses the queued ones (their pages stay extractive).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request

from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.logs import access_log, log, request_stats
from proxy.metrics import Metrics
from proxy.store.base import PageStore, Path
from proxy.tokens import TokenCounter, counter_for_model
from proxy.upstream.client import Upstream
from proxy.vm.ingest import Counters
from proxy.vm.pages import Page
from proxy.vm.summary_pages import (
    CLAIM_IDS,
    SummaryBudget,
    claim_pages,
    is_model_written,
    revised_abstract,
    revised_summary,
    utc_day,
)
from proxy.vm.summary_prompt import (
    REPLY_TOKENS,
    MalformedSummary,
    ModelSummary,
    SummaryPrompt,
    build_prompt,
    parse_answer,
)

QUEUE_SIZE = 1024
# The request headers a summarizer call keeps: who pays for it, nothing else.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "openai-organization", "openai-project"}
)


@dataclass(frozen=True, slots=True)
class SummaryJob:
    tenant: str
    conv_id: str
    seg_id: str
    headers: tuple[tuple[str, str], ...]
    request_id: str = "-"


class Fallback(Exception):
    """This summary stays extractive; `reason` is the metric's label."""

    def __init__(self, reason: str, detail: str, tokens: int = 0) -> None:
        super().__init__(detail)
        self.reason = reason
        self.tokens = tokens


@dataclass(frozen=True, slots=True)
class _Call:
    answer: ModelSummary
    prompt_tokens: int
    completion_tokens: int


class Summarizer:
    def __init__(
        self,
        model: str,
        daily_tokens: int,
        store: PageStore,
        upstream: Upstream,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.model = model
        self._cap = daily_tokens
        self._store = store
        self._upstream = upstream
        self._metrics = metrics
        # When "today" is (the daily cap); a test moves it.
        self.clock = clock
        self._counter: TokenCounter = counter_for_model(model)
        self._queue: asyncio.Queue[SummaryJob] = asyncio.Queue(queue_size)
        self._queued: set[tuple[str, str, str]] = set()
        # Today's spending per (tenant, conversation); emptied when the day changes.
        self._spent: dict[tuple[str, str], SummaryBudget] = {}
        self._day = ""
        self._task: asyncio.Task[None] | None = None
        metrics.sample("vm_backlog_pages", lambda: self._queue.qsize(), {"queue": "summaries"},
                       help="Pages waiting for background work, per queue")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vm-summarizer")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def idle(self) -> None:
        """Wait until every job submitted so far is done (tests, benchmarks)."""
        await self._queue.join()

    def submit(
        self, tenant: str, conv_id: str, seg_ids: Sequence[str],
        headers: Mapping[str, str], request_id: str = "-",
    ) -> int:
        """Queue summary pages for the model (never waits); how many were queued."""
        kept = tuple((k, v) for k, v in headers.items() if k.lower() in CREDENTIAL_HEADERS)
        queued = 0
        for seg_id in seg_ids:
            key = (tenant, conv_id, seg_id)
            if key in self._queued:
                continue  # an ingest retried after a version conflict
            try:
                self._queue.put_nowait(SummaryJob(tenant, conv_id, seg_id, kept, request_id))
            except asyncio.QueueFull:
                self._fallback(SummaryJob(tenant, conv_id, seg_id, kept, request_id),
                               Fallback("queue_full", "the summarizer queue is full"))
                continue
            self._queued.add(key)
            queued += 1
        return queued

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._job(job)
            except Exception:  # a bug or a store failure must not end the worker
                log.exception("summarizer job failed", extra={"seg": job.seg_id})
                self._count("vm_summarizer_fallbacks_total", {"reason": "error"})
            finally:
                self._queued.discard((job.tenant, job.conv_id, job.seg_id))
                self._queue.task_done()

    async def _job(self, job: SummaryJob) -> None:
        try:
            await self._summarise(job)
        except Fallback as failed:
            self._fallback(job, failed)
            self._spend(job, failed.tokens)  # a malformed answer is paid for all the same

    def _budget(self, job: SummaryJob) -> SummaryBudget:
        day = utc_day(self.clock())
        if day != self._day:
            self._spent.clear()
            self._day = day
        return self._spent.get((job.tenant, job.conv_id), SummaryBudget(day))

    def spent_today(self, tenant: str, conv_id: str) -> int:
        """Tokens spent on the conversation today (UTC)."""
        budget = self._spent.get((tenant, conv_id))
        return budget.used if budget is not None and budget.day == self._day else 0

    def _spend(self, job: SummaryJob, tokens: int) -> None:
        if tokens:
            self._spent[(job.tenant, job.conv_id)] = self._budget(job).spent(tokens)

    async def _summarise(self, job: SummaryJob) -> None:
        pages = await self._pages_of(job)
        if pages is None:
            return
        path, summary, covered = pages
        prompt = build_prompt(summary, covered)
        # No temperature: OpenAI's reasoning models refuse any but the default.
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in prompt.messages],
            reply_cap_field(self._upstream.base_url): REPLY_TOKENS,
        }
        budget = self._budget(job)
        worst = self._counter.request(body) + REPLY_TOKENS
        if not budget.allows(worst, self._cap):
            raise Fallback("cap", f"{budget.used} of {self._cap} tokens spent today; "
                                  f"this call may take {worst}")
        call = await self._call(job, body, prompt)
        self._spend(job, call.prompt_tokens + call.completion_tokens)
        # A segment may start before its fork point: what it covers there is its parent's,
        # not this conversation's to rewrite or to anchor a claim at.
        by_id = {p.page_id: p for p in covered if path.owner_of(p.anchor) == job.conv_id}
        revised = [revised_summary(summary, call.answer, self.model, self._counter)]
        revised += [
            revised_abstract(by_id[page_id], text, self.model, self._counter)
            for page_id, text in call.answer.abstracts if page_id in by_id
        ]
        conv = await self._store.get_conversation(job.tenant, job.conv_id)
        known = Counters.from_dict(conv.state.get("counters") if conv else None).claim_keys
        claims = claim_pages(
            call.answer, by_id, list(summary.extra.get(CLAIM_IDS, ())), known, self.model,
            self._counter, now=self.clock(),
        )
        await self._store.put_pages(job.tenant, job.conv_id, [*revised, *claims])
        self._count("vm_summarizer_calls_total", {"outcome": "ok"})
        for kind, count in (("summary", 1), ("abstract", len(revised) - 1),
                            ("claim", len(claims))):
            self._count("vm_summarizer_pages_total", {"kind": kind}, count)
        access_log.info("summarizer", extra={
            "request_id": job.request_id, "seg": job.seg_id, "model": self.model,
            "outcome": "ok", "prompt_tokens": call.prompt_tokens,
            "completion_tokens": call.completion_tokens, "abstracts": len(revised) - 1,
            "claims": len(claims),
        })

    async def _pages_of(self, job: SummaryJob) -> tuple[Path, Page, list[Page]] | None:
        """The conversation's path, the summary page and the pages it covers, once the
        append storing them is done; None when it is gone or already written by a model."""
        async with self._store.lock(job.tenant, job.conv_id):
            pass
        path = await self._store.path(job.tenant, job.conv_id)
        summary = (await self._store.get_pages(path, [job.seg_id])).get(job.seg_id)
        if summary is None or is_model_written(summary):
            return None
        covered = await self._store.get_pages(path, list(summary.covers))
        return path, summary, [covered[i] for i in summary.covers if i in covered]

    async def _call(
        self, job: SummaryJob, body: dict[str, Any], prompt: SummaryPrompt
    ) -> _Call:
        try:
            reply = await self._upstream.post_json("/chat/completions", body, list(job.headers))
        except UpstreamTimeout as exc:
            raise Fallback("timeout", str(exc)) from None
        except UpstreamError as exc:
            raise Fallback("upstream_error", str(exc)) from None
        if reply.status_code != 200:  # (its body is not logged: logs never hold bodies)
            raise Fallback("upstream_error", f"the upstream answered {reply.status_code}")
        try:
            data = orjson.loads(reply.content)
            text = data["choices"][0]["message"]["content"]
        except (orjson.JSONDecodeError, LookupError, TypeError):
            raise Fallback("malformed", "not a chat completion") from None
        usage = data.get("usage") if isinstance(data, Mapping) else None
        usage = usage if isinstance(usage, Mapping) else {}
        prompt_tokens = int(usage.get("prompt_tokens") or self._counter.request(body))
        completion_tokens = int(
            usage.get("completion_tokens") or self._counter.text(str(text or ""))
        )
        self._count("vm_summarizer_tokens_total", {"kind": "prompt"}, prompt_tokens)
        self._count("vm_summarizer_tokens_total", {"kind": "completion"}, completion_tokens)
        try:
            if not isinstance(text, str):
                raise MalformedSummary("the reply has no text")
            answer = parse_answer(text, prompt)
        except MalformedSummary as exc:
            raise Fallback("malformed", str(exc), prompt_tokens + completion_tokens) from None
        return _Call(answer, prompt_tokens, completion_tokens)

    def _fallback(self, job: SummaryJob, failed: Fallback) -> None:
        self._count("vm_summarizer_fallbacks_total", {"reason": failed.reason})
        if failed.reason in ("timeout", "upstream_error", "malformed"):
            self._count("vm_summarizer_calls_total", {"outcome": "failed"})
        log.warning("summarizer fell back to the extractive summary", extra={
            "request_id": job.request_id, "seg": job.seg_id, "model": self.model,
            "reason": failed.reason, "detail": str(failed)[:200], "tokens": failed.tokens,
        })

    def _count(self, name: str, labels: Mapping[str, str], amount: float = 1.0) -> None:
        self._metrics.counter(name, labels, help=_HELP[name]).inc(amount)


def reply_cap_field(base_url: str) -> str:
    """The field capping the reply: OpenAI's own API takes `max_completion_tokens` from
    every chat model (its reasoning models refuse `max_tokens`); other upstreams (vLLM,
    llama.cpp, older gateways) know `max_tokens`."""
    host = urlsplit(base_url).hostname or ""
    return "max_completion_tokens" if host == "api.openai.com" else "max_tokens"


def summaries_hook(
    summarizer: Summarizer | None, tenant: str, request: Request
) -> Callable[[Path, Sequence[Page]], None] | None:
    """What an ingest for `request` tells of the summary pages it made
    (proxy.loop.storing.SummariesMade): they are queued for `summarizer`, and the request's
    access line counts them (`summaries_queued`)."""
    if summarizer is None:
        return None
    active = summarizer

    def made(path: Path, pages: Sequence[Page]) -> None:
        stats = request_stats(request.scope)
        queued = active.submit(
            tenant, path.leaf, [p.page_id for p in pages], request.headers, stats.request_id
        )
        stats.extra["summaries_queued"] = stats.extra.get("summaries_queued", 0) + queued

    return made


_HELP = {
    "vm_summarizer_calls_total": "Summarizer calls to the upstream model, by outcome",
    "vm_summarizer_tokens_total": "Tokens the summarizer model used (prompt, completion)",
    "vm_summarizer_fallbacks_total": "Summaries left extractive, by reason",
    "vm_summarizer_pages_total": "Pages the summarizer model wrote, by kind",
}
