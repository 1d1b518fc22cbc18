"""/metrics tells memory health: pages by level per turn, faults and searches per turn,
tokens sent against the full history, prefix share, the page cache, store latency per
call, upstream latency of memory turns, and a backlog gauge other queues can feed."""

from __future__ import annotations

import re

import httpx
import openai
import respx

from proxy.http.app import create_app
from proxy.http.state import AppState
from tests.loop.harness import API_KEY, UPSTREAM, vm_settings
from tests.loop.history import FACT_MESSAGE, LOCKER, QUESTION
from tests.loop.scripted import Call, Calls, ScriptedModel, agent


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert match is not None, f"{series} not in /metrics"
    return float(match.group(1))


async def test_memory_health_metrics() -> None:
    model = ScriptedModel(agent(LOCKER))
    # Recall keeps to a small share, so an early message is the model's to page in.
    settings = vm_settings(context_budget=2500, activate_above=100, recall_share=0.05)
    settings = settings.model_copy(update={"store": settings.store.model_copy(
        update={"cache_pages": 100})})
    router = respx.Router(assert_all_called=False, assert_all_mocked=True)
    router.post(f"{UPSTREAM}/chat/completions").mock(side_effect=model)
    app = create_app(settings, upstream_transport=httpx.MockTransport(router.async_handler))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://proxy"
    ) as http:
        client = openai.AsyncOpenAI(base_url="http://proxy/v1", api_key=API_KEY,
                                    http_client=http, max_retries=0)
        for turn, text in enumerate([FACT_MESSAGE, "Kites?", "Boots?", QUESTION, "Jazz?"]):
            if turn == 4:
                model.queue(Calls([Call("search_pages", {"query": "kites"})]),
                            Calls([Call("page_fault", {"page_id": "msg_0"})]))
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": text}],
                extra_headers={"x-vm-session": "health"})
        state = app.state
        assert isinstance(state, AppState)
        state.metrics.sample("vm_backlog_pages", lambda: 7, {"queue": "embeddings"},
                             help="Pages waiting for background work")
        text = (await http.get("/metrics")).text
    turns = _value(text, "vm_turns_total")
    assert turns >= 3
    assert _value(text, 'vm_turn_pages_mapped_count{level="0"}') == turns
    assert _value(text, 'vm_turn_pages_mapped_sum{level="0"}') > 0
    assert _value(text, "vm_turn_faults_sum") == _value(text, "vm_faults_total") >= 1
    assert _value(text, "vm_turn_searches_sum") >= 1
    assert _value(text, "vm_turn_prompt_share_count") == turns
    assert _value(text, "vm_turn_prefix_share_count") == turns
    assert 0 < _value(text, "vm_turn_prefix_share_sum") < turns
    assert _value(text, "vm_page_cache_hits_total") > 0
    assert _value(text, "vm_page_cache_misses_total") >= 0
    assert _value(text, 'vm_store_seconds_count{call="append"}') >= 5
    assert _value(text, 'vm_store_seconds_count{call="search"}') >= 1
    assert _value(text, 'vm_proxy_upstream_seconds_count{route="/v1/chat/completions"}') == 5
    assert _value(text, 'vm_backlog_pages{queue="embeddings"}') == 7
    assert "# TYPE vm_page_cache_hits_total counter" in text
