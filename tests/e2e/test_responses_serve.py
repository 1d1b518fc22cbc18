"""Responses API clients through `vm-proxy serve` on a loopback port, unchanged but for the
base URL: the `openai` SDK's `responses.create` and `responses.stream`, and the OpenAI
Agents SDK with its default (Responses) model and a function tool. The conversation is long
enough for memory to be active; a fact from early in it is recalled through search_pages
and page_fault by a stateless Responses upstream; no VM call reaches the client and every
upstream request stays within the budget."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import Call, Calls, Decision, Reading, agent
from tests.loop.scripted_responses import ResponsesModel
from tests.loop.test_responses import as_responses, upstream_cost
from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess, run_proxy

pytestmark = pytest.mark.e2e

MODEL = "gpt-4o-mini"
BUDGET = 3000
VM_ENV = {
    "VM_PROXY_VM__CONTEXT_BUDGET": str(BUDGET),
    "VM_PROXY_VM__ACTIVATE_ABOVE": "1500",
    "VM_PROXY_VM__PIN_LAST_TURNS": "1",
    "VM_PROXY_VM__MAX_FAULTS_PER_TURN": "3",
    "VM_PROXY_VM__RECALL_SHARE": "0",
}
ANSWER = f"Your locker code is {LOCKER_CODE}."
REPLY_RESERVE = BUDGET // 5


@pytest.fixture
def served() -> Iterator[tuple[ResponsesModel, ProxyProcess]]:
    model = ResponsesModel(agent(LOCKER), reasoning=True)
    with FakeUpstream(model.fake_upstream_handler) as upstream, run_proxy(
        upstream=upstream.url, env=VM_ENV
    ) as proxy:
        yield model, proxy


def _client(proxy: ProxyProcess, http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-test", http_client=http,
                              max_retries=0)


def _checked(model: ResponsesModel) -> None:
    for body in model.requests:
        assert upstream_cost(body, REPLY_RESERVE) <= BUDGET
        assert "previous_response_id" not in body
    assert any(s.action == "fault" for s in model.steps)


async def test_openai_sdk_create_and_stream(
    served: tuple[ResponsesModel, ProxyProcess],
) -> None:
    model, proxy = served
    instructions, items = as_responses(conversation(120))
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        client = _client(proxy, http)
        first = await client.responses.create(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": QUESTION}])
        async with client.responses.stream(
            model=MODEL, instructions=instructions, previous_response_id=first.id,
            input="Say it again please: " + QUESTION,
        ) as stream:
            events = [event async for event in stream]
            second = await stream.get_final_response()
    assert first.output_text == ANSWER, proxy.logs()
    assert second.output_text == ANSWER
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for response in (first, second):
        assert not any(i.type == "function_call" for i in response.output)
    assert not any("function_call" in e.type for e in events)
    _checked(model)


class _Weather:
    """A policy: the client's weather tool first, then the locker fact from memory."""

    def __init__(self) -> None:
        self.recall = agent(LOCKER)

    def __call__(self, reading: Reading) -> Decision:
        asked = any(r.name == "get_weather" for r in reading.results)
        if not asked and "weather" in reading.question.lower():
            return Calls([Call("get_weather", {"city": "Porto"})])
        decision = self.recall(reading)
        weather = next((r.content for r in reading.results if r.name == "get_weather"), None)
        if weather is not None and hasattr(decision, "text") and "locker code is" in getattr(
            decision, "text", ""
        ):
            return type(decision)(f"{decision.text} Porto: {weather}.")  # type: ignore[call-arg]
        return decision


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
async def test_agents_sdk_with_a_function_tool(streamed: bool) -> None:
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)
    model = ResponsesModel(_Weather(), reasoning=True)
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return "sunny and 24 C"

    history = conversation(120)
    items: list[Any] = [{"role": m["role"], "content": m["content"]} for m in history[1:]]
    items.append({"role": "user", "content": f"{QUESTION} And what is the weather in Porto?"})
    with FakeUpstream(model.fake_upstream_handler) as upstream, run_proxy(
        upstream=upstream.url, env=VM_ENV
    ) as proxy:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
            client = _client(proxy, http)
            bot = agents.Agent(
                name="helper", instructions=history[0]["content"], tools=[get_weather],
                model=agents.OpenAIResponsesModel(MODEL, client),
            )
            if streamed:
                result = agents.Runner.run_streamed(bot, items)
                seen = [event async for event in result.stream_events()]
                assert seen
            else:
                result = await agents.Runner.run(bot, items)
            metrics = (await http.get(f"{proxy.url}/metrics")).text
        logs = proxy.logs()
    assert result.final_output == f"{ANSWER} Porto: sunny and 24 C.", logs
    assert calls == ["Porto"]
    names = [item.raw_item.name for item in result.new_items
             if getattr(item, "type", "") == "tool_call_item"]
    assert names == ["get_weather"]  # the VM calls never reached the agent
    assert model.actions[0] == "calls" and model.actions[-1] == "answer"
    _checked(model)
    # The agent resent the whole conversation with its tool result; the proxy aligned it
    # with what it stored and sent the upstream a packed prompt, not the whole history.
    last = json.dumps(model.requests[-1]["input"])
    assert "sunny and 24 C" in last and "Turn 3:" not in last
    # Its second request repeats the first's bytes and adds the call and its result: read
    # from the first (proxy.http.resent), as the server's counter shows.
    assert 'vm_resent_bodies_read_total{api="responses"} 1' in metrics, metrics
