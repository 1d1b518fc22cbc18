"""Summaries written by a model (`vm.summarizer`), replayed with a scripted upstream: the real
app behind the real `openai` SDK, the upstream a respx router that sends the summarizer's
calls to a scripted summarizing model and the rest to the scripted chat model."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
import respx

from proxy.config import Settings
from proxy.http.app import create_app
from proxy.http.state import AppState
from proxy.loop.summarizer import Summarizer, reply_cap_field
from proxy.metrics import Metrics
from proxy.store import open_store
from proxy.store.base import PageStore
from proxy.upstream.client import Upstream
from proxy.vm.summary_prompt import REPLY_TOKENS
from tests.loop.harness import API_KEY, DEADLINE_S, MODEL, Proxy, vm_message, vm_settings
from tests.loop.history import conversation
from tests.loop.scripted import ScriptedModel, agent
from tests.loop.summarizing import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    SUMMARIZER,
    Dispatch,
    Hold,
    Status,
    SummarizingModel,
    Text,
    abstract_of,
    claim_of,
    summary_of,
)

# 30 turns: about 2,600 tokens, over activate_above (1,500); segments every 8 turns.
TURNS = 30


def _settings(**vm: Any) -> Settings:
    # Room for the summaries beside the recent turns.
    return vm_settings(**{"summarizer": SUMMARIZER, "recall_share": 1.0,
                          "context_budget": 8000, **vm})


@asynccontextmanager
async def serve(
    settings: Settings, summarizer: SummarizingModel | None = None, store_url: str = "memory://"
) -> AsyncIterator[tuple[Proxy, Dispatch]]:
    chat = ScriptedModel(agent())
    dispatch = Dispatch(chat, summarizer or SummarizingModel())
    store = await open_store(store_url, cache_pages=settings.store.cache_pages)
    router = respx.Router(assert_all_called=False, assert_all_mocked=True)
    router.post(f"{settings.upstream.base_url}/chat/completions").mock(side_effect=dispatch)
    app = create_app(settings, upstream_transport=httpx.MockTransport(router.async_handler),
                     store=store)
    try:
        async with asyncio.timeout(DEADLINE_S), app.router.lifespan_context(app):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://proxy"
            ) as http:
                client = openai.AsyncOpenAI(
                    base_url="http://proxy/v1", api_key=API_KEY, http_client=http, max_retries=0
                )
                yield Proxy(app, settings, store, chat, http, client), dispatch
    finally:
        await store.close()


def _state(proxy: Proxy) -> AppState:
    state = proxy.app.state
    assert isinstance(state, AppState)
    return state


def _summarizer(proxy: Proxy) -> Summarizer:
    summarizer = _state(proxy).summarizer
    assert summarizer is not None
    return summarizer


async def _ask(proxy: Proxy, history: list[dict[str, Any]], question: str) -> str:
    """One client turn; returns the answer (the history grows by the turn)."""
    history.append({"role": "user", "content": question})
    reply = await proxy.client.chat.completions.create(model=MODEL, messages=history)
    answer = reply.choices[0].message.content or ""
    history.append({"role": "assistant", "content": answer})
    return answer


async def _pages(proxy: Proxy, *ids: str) -> dict[str, Any]:
    store: PageStore = proxy.store
    (info,) = await store.list_conversations(tenant=proxy.tenant)
    path = await store.path(proxy.tenant, info.conv_id)
    return await store.get_pages(path, list(ids))


def _abstracts_asked(body: dict[str, Any]) -> list[str]:
    line = body["messages"][1]["content"].rpartition("ABSTRACTS: ")[2].partition("\n")[0]
    return [] if line == "none" else line.split(", ")


async def _metrics(proxy: Proxy) -> str:
    return (await proxy.http.get("/metrics")).text


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_model_summaries_replace_the_extractive_ones_and_reach_the_next_turn(
    caplog: pytest.LogCaptureFixture, tmp_path: pathlib.Path, backend: str
) -> None:
    caplog.set_level(logging.INFO, logger="vm_proxy")
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path}/vm.db"
    async with serve(_settings(), store_url=url) as (proxy, dispatch):
        history = conversation(TURNS)
        await _ask(proxy, history, "Hello again, anything new?")
        await _summarizer(proxy).idle()

        calls = dispatch.summarizer.requests
        assert len(calls) == 3  # seg_0..seg_2: 30 turns, one segment every 8
        assert all(c["model"] == SUMMARIZER and c["max_tokens"] == REPLY_TOKENS for c in calls)
        assert dispatch.summarizer_credentials == [f"Bearer {API_KEY}"] * 3
        pages = await _pages(proxy, "seg_0", "seg_1", "seg_2")
        seg0 = pages["seg_0"]
        covered = list(seg0.covers)
        assert seg0.rendering(2) == f"Summary of {seg0.extra['span']}: " + summary_of(covered)
        assert seg0.extra["summarizer"] == SUMMARIZER
        assert seg0.extra["summarises"] == covered
        assert all(p.extra.get("summarizer") == SUMMARIZER for p in pages.values())
        messages = await _pages(proxy, *covered)
        first_user = next(i for i in covered if messages[i].role == "user")
        claims = [p for p in (await _pages(proxy, *(f"claim_{n}" for n in range(100)))).values()
                  if p.extra.get("summarizer")]
        assert [c.page_id for c in claims] == [
            p.extra["claim_ids"][0] for p in pages.values()]  # the first id each kept
        assert claims[0].text == claim_of(first_user) and claims[0].covers == (first_user,)
        (info,) = await proxy.store.list_conversations(tenant=proxy.tenant)
        path = await proxy.store.path(proxy.tenant, info.conv_id)
        hits = await proxy.store.search(path, "chore diary entry", limit=3)
        assert {h.page.page_id for h in hits} == {c.page_id for c in claims}

        # Written beside the turn, not over it: nothing a turn stored was lost.
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        conv = await proxy.store.get_conversation(proxy.tenant, info.conv_id)
        assert conv is not None and conv.length == len(history)

        # The next memory-active turn sends the model's summaries upstream.
        mark = proxy.model.mark()
        await _ask(proxy, history, "Thanks. What did we talk about at the start?")
        sent = "\n".join(vm_message(body) or "" for body in proxy.model.requests[mark:])
        assert summary_of(covered) in sent

        metrics = await _metrics(proxy)
        assert f'vm_summarizer_tokens_total{{kind="prompt"}} {3 * PROMPT_TOKENS}' in metrics
        assert f'vm_summarizer_tokens_total{{kind="completion"}} {3 * COMPLETION_TOKENS}' in (
            metrics)
        assert 'vm_summarizer_calls_total{outcome="ok"} 3' in metrics
        assert 'vm_summarizer_pages_total{kind="summary"} 3' in metrics
        assert 'vm_backlog_pages{queue="summaries"} 0' in metrics

    requests = [r for r in caplog.records if r.name == "vm_proxy.access" and r.msg == "request"]
    queued = [getattr(r, "summaries_queued", 0) for r in requests]
    assert queued[0] == 3
    lines = [r for r in caplog.records if r.name == "vm_proxy.access" and r.msg == "summarizer"]
    assert len(lines) == 3
    assert {r.__dict__["request_id"] for r in lines} == {requests[0].__dict__["request_id"]}
    assert [r.__dict__["prompt_tokens"] for r in lines] == [PROMPT_TOKENS] * 3


async def test_abstracts_of_long_messages_are_written_by_the_model() -> None:
    history = conversation(TURNS)
    history[3] = {"role": "user", "content": "A long story about the garden. " * 30}
    async with serve(_settings()) as (proxy, dispatch):
        await _ask(proxy, history, "Hello again.")
        await _summarizer(proxy).idle()
        listed = _abstracts_asked(dispatch.summarizer.requests[0])
        assert "msg_3" in listed and "msg_1" not in listed  # long, and short
        page = (await _pages(proxy, "msg_3"))["msg_3"]
        assert page.rendering(2) == abstract_of("msg_3")
        assert page.rendering(0) == history[3]["content"]
        assert page.extra["summarises"] == ["msg_3"]
        written = sum(len(_abstracts_asked(r)) for r in dispatch.summarizer.requests)
        assert f'vm_summarizer_pages_total{{kind="abstract"}} {written}' in await _metrics(proxy)


async def test_the_answer_never_waits_for_the_summarizer() -> None:
    release = asyncio.Event()
    summarizer = SummarizingModel()
    summarizer.queue(Hold(release))
    async with serve(_settings(), summarizer) as (proxy, dispatch):
        history = conversation(TURNS)
        answer = await _ask(proxy, history, "Hello again.")
        # The summarizer's call is still open: the client had its answer anyway.
        assert answer.startswith("Noted") and not release.is_set()
        assert len(summarizer.requests) == 1
        assert "summarizer" not in (await _pages(proxy, "seg_0"))["seg_0"].extra
        release.set()
        await _summarizer(proxy).idle()
        assert (await _pages(proxy, "seg_0"))["seg_0"].extra["summarizer"] == SUMMARIZER


async def test_failures_fall_back_to_the_extractive_summary() -> None:
    summarizer = SummarizingModel()
    summarizer.queue(Status(500), Text("Sure! Here is a summary of the stretch."))
    async with serve(_settings(), summarizer) as (proxy, _):
        history = conversation(TURNS)
        answer = await _ask(proxy, history, "Hello again.")
        await _summarizer(proxy).idle()
        assert answer.startswith("Noted")
        pages = await _pages(proxy, "seg_0", "seg_1", "seg_2")
        assert "summarizer" not in pages["seg_0"].extra  # the 500
        assert "summarizer" not in pages["seg_1"].extra  # not JSON
        assert pages["seg_0"].rendering(2).startswith("Summary of turns")
        assert "Mentions:" in pages["seg_0"].rendering(2)  # the extractive form
        assert pages["seg_2"].extra["summarizer"] == SUMMARIZER
        metrics = await _metrics(proxy)
        assert 'vm_summarizer_fallbacks_total{reason="upstream_error"} 1' in metrics
        assert 'vm_summarizer_fallbacks_total{reason="malformed"} 1' in metrics
        assert 'vm_summarizer_calls_total{outcome="failed"} 2' in metrics
        # The malformed answer was paid for: its tokens count.
        assert f'vm_summarizer_tokens_total{{kind="prompt"}} {2 * PROMPT_TOKENS}' in metrics


async def test_a_timeout_falls_back() -> None:
    summarizer = SummarizingModel()
    summarizer.queue(Hold(asyncio.Event()))  # never answers
    settings = _settings()
    settings = settings.model_copy(update={
        "upstream": settings.upstream.model_copy(update={"timeout_s": 0.3})})
    async with serve(settings, summarizer) as (proxy, _):
        await _ask(proxy, conversation(TURNS), "Hello again.")
        await _summarizer(proxy).idle()
        metrics = await _metrics(proxy)
        assert 'vm_summarizer_fallbacks_total{reason="timeout"} 1' in metrics
        assert 'vm_summarizer_calls_total{outcome="ok"} 2' in metrics


async def test_the_daily_cap_stops_calls_and_keeps_the_extractive_form() -> None:
    # Each call reports 5,000 prompt tokens: after the first, no second fits under 6,000.
    summarizer = SummarizingModel(prompt_tokens=5_000)
    async with serve(_settings(summarizer_daily_tokens=6_000), summarizer) as (proxy, _):
        history = conversation(TURNS)
        await _ask(proxy, history, "Hello again.")
        await _summarizer(proxy).idle()
        assert len(summarizer.requests) == 1
        pages = await _pages(proxy, "seg_0", "seg_1", "seg_2")
        assert [("summarizer" in p.extra) for p in pages.values()] == [True, False, False]
        metrics = await _metrics(proxy)
        assert 'vm_summarizer_fallbacks_total{reason="cap"} 2' in metrics

        # The spending is kept across turns: later segments are not summarised either.
        for turn in range(10):
            await _ask(proxy, history, f"Another thing number {turn}.")
        await _summarizer(proxy).idle()
        assert len(summarizer.requests) == 1
        # seg_3 and seg_4 (turns 32 and 40) were refused too.
        assert 'vm_summarizer_fallbacks_total{reason="cap"} 4' in await _metrics(proxy)
        (info,) = await proxy.store.list_conversations(tenant=proxy.tenant)
        background = _summarizer(proxy)
        assert background.spent_today(proxy.tenant, info.conv_id) == 5_000 + COMPLETION_TOKENS

        # The next day starts over: the next segment (turn 48) is summarised.
        today = background.clock()
        background.clock = lambda: today + 86_400
        for turn in range(8):
            await _ask(proxy, history, f"A new day, thing number {turn}.")
        await background.idle()
        assert len(summarizer.requests) == 2
        assert background.spent_today(proxy.tenant, info.conv_id) == 5_000 + COMPLETION_TOKENS


async def test_a_malformed_answer_counts_against_the_cap() -> None:
    summarizer = SummarizingModel(prompt_tokens=5_000)
    summarizer.queue(Text("Here is the summary you asked for."))
    async with serve(_settings(summarizer_daily_tokens=6_000), summarizer) as (proxy, _):
        await _ask(proxy, conversation(TURNS), "Hello again.")
        await _summarizer(proxy).idle()
        assert len(summarizer.requests) == 1
        metrics = await _metrics(proxy)
        assert 'vm_summarizer_fallbacks_total{reason="malformed"} 1' in metrics
        assert 'vm_summarizer_fallbacks_total{reason="cap"} 2' in metrics


async def test_off_makes_no_summarizer_calls() -> None:
    settings = vm_settings(recall_share=1.0)
    assert settings.vm.summarizer == "off"
    async with serve(settings) as (proxy, dispatch):
        history = conversation(TURNS)
        await _ask(proxy, history, "Hello again.")
        await _ask(proxy, history, "And again.")
        assert _state(proxy).summarizer is None
        assert dispatch.summarizer.requests == []
        assert "vm_summarizer" not in await _metrics(proxy)
        pages = await _pages(proxy, "seg_0")
        assert "summarizer" not in pages["seg_0"].extra


async def test_submitting_never_waits_and_drops_what_the_queue_cannot_hold() -> None:
    settings = _settings()
    store = await open_store("memory://")
    metrics = Metrics()
    upstream = Upstream(settings.upstream, httpx.MockTransport(lambda request: httpx.Response(500)))
    summarizer = Summarizer(SUMMARIZER, 1000, store, upstream, metrics, queue_size=2)
    headers = {"authorization": "Bearer sk-x", "cookie": "kept-out", "content-length": "9"}
    try:
        assert summarizer.submit("t", "c", ["seg_0", "seg_1", "seg_2"], headers) == 2
        assert summarizer.submit("t", "c", ["seg_0"], headers) == 0  # already queued
        text = metrics.render()
        assert 'vm_summarizer_fallbacks_total{reason="queue_full"} 1' in text
        assert 'vm_backlog_pages{queue="summaries"} 2' in text
        job = summarizer._queue.get_nowait()
        assert job.seg_id == "seg_0" and job.headers == (("authorization", "Bearer sk-x"),)
    finally:
        await upstream.aclose()
        await store.close()


def test_the_reply_cap_is_named_as_the_upstream_knows_it() -> None:
    assert reply_cap_field("https://api.openai.com/v1") == "max_completion_tokens"
    assert reply_cap_field("http://localhost:8000/v1") == "max_tokens"
    assert reply_cap_field("https://api.openai.com.example.net/v1") == "max_tokens"
