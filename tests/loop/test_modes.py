"""When the loop stays out of the way: below `activate_above`, `X-VM-Mode: off`; and when it
packs without tools: `X-VM-Mode: passive`, `tool_choice` "none" or naming a function."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from proxy.vm.identity import chain_hashes
from tests.loop.harness import (
    MODEL,
    has_vm_tools,
    serve,
    tool_names,
    upstream_cost,
    vm_message,
    vm_settings,
)
from tests.loop.history import LOCKER, QUESTION, conversation
from tests.loop.scripted import ScriptedModel, agent

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def _short() -> list[dict[str, Any]]:
    return [*conversation(3, fact_turn=None), {"role": "user", "content": "Thanks, bye!"}]


def _long() -> list[dict[str, Any]]:
    return [*conversation(80), {"role": "user", "content": QUESTION}]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_below_the_threshold_the_request_is_forwarded_unchanged(stream: bool) -> None:
    model = ScriptedModel(agent(LOCKER))
    body = {"model": MODEL, "messages": _short(), "temperature": 0.3, "stream": stream,
            "tools": [WEATHER_TOOL], "x_vendor_field": {"keep": True}}
    async with serve(model) as proxy:
        response = await proxy.raw_chat(body)
        assert response.status_code == 200
        assert model.requests == [body]
        assert response.headers.get("x-vm-faults", "0") == "0"
        # Memory is still built: the messages and the answer are stored.
        answer = "Noted, thanks (2 words)."
        stored = [*body["messages"], {"role": "assistant", "content": answer}]
        hashes = chain_hashes(proxy.tenant, stored)
        found = await proxy.store.lookup_hashes(proxy.tenant, hashes)
        assert all(h in found for h in hashes)


async def test_below_the_threshold_through_the_sdk() -> None:
    model = ScriptedModel(agent(LOCKER))
    messages = _short()
    async with serve(model) as proxy:
        completion = await proxy.client.chat.completions.create(model=MODEL, messages=messages)
    assert completion.choices[0].message.content == "Noted, thanks (2 words)."
    assert model.requests[0]["messages"] == messages
    assert "tools" not in model.requests[0]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_mode_off_forwards_a_long_conversation_unchanged(stream: bool) -> None:
    model = ScriptedModel(agent(LOCKER))
    body = {"model": MODEL, "messages": _long(), "stream": stream}
    async with serve(model) as proxy:
        response = await proxy.raw_chat(body, headers={"X-VM-Mode": "off"})
    assert response.status_code == 200
    assert model.requests == [body]
    assert model.actions == ["answer"]


async def test_mode_passive_packs_the_context_without_tools() -> None:
    model = ScriptedModel(agent(LOCKER))
    async with serve(model, vm_settings(recall_share=1.0)) as proxy:
        completion = await proxy.client.chat.completions.create(
            model=MODEL, messages=_long(), tools=[WEATHER_TOOL],
            extra_headers={"X-VM-Mode": "passive"},
        )
    assert completion.choices[0].message.content
    assert len(model.requests) == 1
    body = model.requests[0]
    assert not has_vm_tools(body)
    assert tool_names(body) == ["get_weather"]
    context = vm_message(body)
    assert context is not None and "<VM:CONTEXT>" in context
    assert upstream_cost(body, proxy.settings) <= proxy.settings.vm.context_budget
    assert len(body["messages"]) < len(_long())


@pytest.mark.parametrize(
    "tool_choice",
    ["none", {"type": "function", "function": {"name": "get_weather"}}],
    ids=["none", "named-function"],
)
async def test_tool_choice_that_rules_out_memory_tools_runs_passive(tool_choice: Any) -> None:
    model = ScriptedModel(agent(LOCKER))
    async with serve(model) as proxy:
        await proxy.client.chat.completions.create(
            model=MODEL, messages=_long(), tools=[WEATHER_TOOL], tool_choice=tool_choice
        )
    body = model.requests[0]
    assert len(model.requests) == 1
    assert not has_vm_tools(body)
    assert body["tool_choice"] == tool_choice
    assert tool_names(body) == ["get_weather"]
    assert vm_message(body) is not None


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_invalid_vm_mode_is_a_400_naming_the_header(stream: bool) -> None:
    model = ScriptedModel(agent(LOCKER))
    async with serve(model) as proxy:
        with pytest.raises(openai.BadRequestError) as raised:
            await proxy.client.chat.completions.create(
                model=MODEL, messages=_short(), stream=stream,
                extra_headers={"X-VM-Mode": "turbo"},
            )
    error = raised.value
    assert error.status_code == 400
    assert error.param == "X-VM-Mode"
    assert isinstance(error.body, dict) and {"message", "type", "param", "code"} <= set(error.body)
    assert model.requests == []


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
async def test_a_bad_body_is_refused_before_a_bad_vm_mode(path: str) -> None:
    # Both routes check the body first (the Responses route reads the header early, to
    # know whether to make the memory's messages, but refuses it only after the body).
    body = {"model": MODEL, "messages": 3} if "chat" in path else {"model": MODEL, "input": 3}
    async with serve(ScriptedModel(agent(LOCKER))) as proxy:
        for mode, param in (("turbo", "messages" if "chat" in path else "input"),
                            ("off", "messages" if "chat" in path else "input")):
            response = await proxy.http.post(path, json=body, headers={"X-VM-Mode": mode})
            assert response.status_code == 400
            assert response.json()["error"]["param"] == param
        good = {"model": MODEL, "messages": _short()} if "chat" in path else {
            "model": MODEL, "input": "hi"}
        response = await proxy.http.post(path, json=good, headers={"X-VM-Mode": "turbo"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "X-VM-Mode"
