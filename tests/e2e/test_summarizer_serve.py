"""`vm-proxy serve` with `vm.summarizer` naming a model, the upstream on loopback: the
summaries a model wrote reach a later turn, and their cost shows in /metrics and the
access log."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import openai
import pytest

from tests.loop.history import conversation
from tests.loop.scripted import ScriptedModel, agent
from tests.loop.summarizing import PROMPT_TOKENS, SUMMARIZER, SummarizingModel, summary_of
from tests.support.fake_upstream import FakeUpstream, RecordedRequest, Reply
from tests.support.proxy_process import run_proxy

pytestmark = pytest.mark.e2e

API_KEY = "sk-e2e-summarizer-do-not-log-me"
ENV = {
    "VM_PROXY_VM__CONTEXT_BUDGET": "8000",
    "VM_PROXY_VM__ACTIVATE_ABOVE": "1500",
    "VM_PROXY_VM__PIN_LAST_TURNS": "1",
    "VM_PROXY_VM__SUMMARIZER": SUMMARIZER,
}


def _metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


async def test_model_summaries_over_loopback() -> None:
    chat = ScriptedModel(agent())
    summarizer = SummarizingModel()

    def handler(request: RecordedRequest) -> Reply:
        body = request.json()
        if body.get("model") == SUMMARIZER:
            status, reply = summarizer.reply(body)
            return Reply.json(reply, status=status)
        return chat.fake_upstream_handler(request)

    history = conversation(30)
    with FakeUpstream(handler) as upstream, run_proxy(upstream=upstream.url, env=ENV) as proxy:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
            client = openai.AsyncOpenAI(
                base_url=proxy.base_url, api_key=API_KEY, http_client=http, max_retries=0
            )
            history.append({"role": "user", "content": "Hello again, anything new?"})
            first = await client.chat.completions.create(model="gpt-4o-mini", messages=history)
            history.append({"role": "assistant", "content": first.choices[0].message.content})
            deadline = time.monotonic() + 15
            ok = 'vm_summarizer_calls_total{outcome="ok"}'
            while _metric((await http.get(f"{proxy.url}/metrics")).text, ok) < 3:
                assert time.monotonic() < deadline, proxy.logs()
                await asyncio.sleep(0.05)
            mark = chat.mark()
            history.append({"role": "user", "content": "What did we talk about at the start?"})
            await client.chat.completions.create(model="gpt-4o-mini", messages=history)
            metrics = (await http.get(f"{proxy.url}/metrics")).text
        logs = proxy.logs()

    sent = json.dumps(chat.requests[mark:])
    read = re.findall(r"^\[(\w+)\]", summarizer.requests[0]["messages"][1]["content"], re.M)
    assert read[0] == "msg_0" and summary_of(read) in sent
    assert _metric(metrics, 'vm_summarizer_tokens_total{kind="prompt"}') == 3 * PROMPT_TOKENS
    assert len(summarizer.requests) == 3
    assert all(r.headers.get("authorization") == f"Bearer {API_KEY}"
               for r in upstream.requests if r.json().get("model") == SUMMARIZER)
    assert API_KEY not in logs
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "vm_proxy.access"]
    requests = [line for line in access if line["msg"] == "request"
                and line.get("route") == "/v1/chat/completions"]
    calls = [line for line in access if line["msg"] == "summarizer"]
    assert requests[0]["summaries_queued"] == 3
    assert [c["prompt_tokens"] for c in calls] == [PROMPT_TOKENS] * 3
    assert {c["request_id"] for c in calls} == {requests[0]["request_id"]}
    assert {c["model"] for c in calls} == {SUMMARIZER}
