"""`vm-proxy serve` on a loopback port, the scripted model served on another: one VM-active
conversation over real sockets, streamed, as a chat app would see it."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.loop.harness import MODEL, sum_usage, upstream_cost, vm_settings
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION
from tests.loop.scripted import ScriptedModel, agent
from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import run_proxy

pytestmark = pytest.mark.e2e

VM_ENV = {
    "VM_PROXY_VM__CONTEXT_BUDGET": "3000",
    "VM_PROXY_VM__ACTIVATE_ABOVE": "1500",
    "VM_PROXY_VM__PIN_LAST_TURNS": "1",
    "VM_PROXY_VM__MAX_FAULTS_PER_TURN": "3",
    "VM_PROXY_VM__RECALL_SHARE": "0",
}


async def test_streamed_recall_over_loopback(long_history: list[dict[str, Any]]) -> None:
    model = ScriptedModel(agent(LOCKER))
    settings = vm_settings()
    with FakeUpstream(model.fake_upstream_handler) as upstream, run_proxy(
        upstream=upstream.url, env=VM_ENV
    ) as proxy:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
            client = openai.AsyncOpenAI(
                base_url=proxy.base_url, api_key="sk-test", http_client=http, max_retries=0
            )
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL,
                messages=[*long_history, {"role": "user", "content": QUESTION}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in raw.parse()]
        logs = proxy.logs()
    assert model.actions == ["search", "fault", "answer"], logs
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Your locker code is {LOCKER_CODE}."
    assert all(c.choices[0].delta.tool_calls is None for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks
            if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert len({c.id for c in chunks}) == 1
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
    assert chunks[-1].usage is not None and chunks[-1].usage.model_dump(include={
        "prompt_tokens", "completion_tokens", "total_tokens"}) == sum_usage(model.usages())
    assert raw.headers["x-vm-session"]
    for body in model.requests:
        assert upstream_cost(body, settings) <= settings.vm.context_budget
