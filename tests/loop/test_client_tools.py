"""Client tools and VM tools in one response: the client gets only its own calls, renumbered
0..k-1; the VM calls beside them are resolved by the proxy; the conversation continues
when the client sends its tool results back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.loop.harness import MODEL, serve, tool_names, vm_message
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import Answer, Call, Calls, ScriptedModel, agent


def _function(name: str, description: str) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}


CLIENT_TOOLS = [_function("get_weather", "Current weather in a city."),
                _function("get_time", "Local time in a city.")]
WEATHER = Call("get_weather", {"city": "Lisbon"})
TIME = Call("get_time", {"city": "Lisbon"})
PARALLEL = Calls([WEATHER, Call("page_fault", {"page_id": "msg_11", "target_level": 0}), TIME])
ANSWER = "Sunny in Lisbon, and it is noon there."


def _history() -> list[dict[str, Any]]:
    return [*conversation(80), {"role": "user", "content": "Weather and time in Lisbon?"}]


def _follow_up(history: list[dict[str, Any]], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The client runs its tools and sends the results back, as an agent framework does."""
    results = [{"role": "tool", "tool_call_id": c["id"],
                "content": "sunny, 24 C" if c["function"]["name"] == "get_weather" else "12:00"}
               for c in calls]
    return [*history, {"role": "assistant", "content": None, "tool_calls": calls}, *results]


def _assert_second_request(model: ScriptedModel, calls: list[dict[str, Any]]) -> None:
    body = model.requests[-1]
    # Still packed (the VM tools may be left out if they do not fit beside the exchange).
    assert vm_message(body) is not None
    assert tool_names(body)[:2] == ["get_weather", "get_time"]
    messages = body["messages"]
    at = next(i for i, m in enumerate(messages) if m.get("tool_calls"))
    sent = messages[at]["tool_calls"]
    assert [c["id"] for c in sent] == [c["id"] for c in calls]
    assert [c["function"]["name"] for c in sent] == ["get_weather", "get_time"]
    assert [m.get("tool_call_id") for m in messages[at + 1 : at + 3]] == [c["id"] for c in calls]
    assert [m["role"] for m in messages[at + 1 : at + 3]] == ["tool", "tool"]


async def test_parallel_client_and_vm_calls_non_streaming() -> None:
    model = ScriptedModel(agent(LOCKER))
    model.queue(PARALLEL)
    history = _history()
    async with serve(model) as proxy:
        raw = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=history, tools=CLIENT_TOOLS
        )
        completion = raw.parse()
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls"
        calls = [c.model_dump() for c in choice.message.tool_calls or []]
        assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
        assert [json.loads(c["function"]["arguments"]) for c in calls] == [
            {"city": "Lisbon"}, {"city": "Lisbon"}]
        assert raw.headers["x-vm-faults"] == "1"  # the VM call beside them was resolved
        assert len(model.requests) == 1

        model.queue(Answer(ANSWER))
        follow = await proxy.client.chat.completions.create(
            model=MODEL, messages=_follow_up(history, calls), tools=CLIENT_TOOLS
        )
    assert follow.choices[0].message.content == ANSWER
    assert follow.choices[0].finish_reason == "stop"
    _assert_second_request(model, calls)


async def test_parallel_client_and_vm_calls_streaming() -> None:
    model = ScriptedModel(agent(LOCKER))
    model.queue(Calls([Call("search_pages", {"query": "gym"}), WEATHER,
                       Call("page_fault", {"page_id": "msg_11", "target_level": 0}), TIME]))
    history = _history()
    async with serve(model) as proxy:
        stream = await proxy.client.chat.completions.create(
            model=MODEL, messages=history, tools=CLIENT_TOOLS, stream=True
        )
        chunks = [chunk async for chunk in stream]
        deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        assert {d.index for d in deltas} == {0, 1}
        calls: list[dict[str, Any]] = []
        for index in (0, 1):
            mine = [d for d in deltas if d.index == index]
            head = mine[0]
            assert head.id and head.function is not None and head.type == "function"
            arguments = "".join(d.function.arguments or "" for d in mine if d.function)
            calls.append({"id": head.id, "type": "function", "function": {
                "name": head.function.name, "arguments": arguments}})
        assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
        assert [json.loads(c["function"]["arguments"]) for c in calls] == [
            {"city": "Lisbon"}, {"city": "Lisbon"}]
        finishes = [c.choices[0].finish_reason for c in chunks
                    if c.choices and c.choices[0].finish_reason]
        assert finishes == ["tool_calls"]
        assert len({c.id for c in chunks}) == 1
        assert len(model.requests) == 1
        roles = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.role]
        assert len(roles) == 1 and roles[0].content is None  # as OpenAI streams tool calls
        assert roles[0].tool_calls  # the role came with the first call

        model.queue(Answer(ANSWER))
        follow = await proxy.client.chat.completions.create(
            model=MODEL, messages=_follow_up(history, calls), tools=CLIENT_TOOLS, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in follow if c.choices])
    assert text == ANSWER
    _assert_second_request(model, calls)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_client_tool_named_like_a_vm_tool(stream: bool) -> None:
    """The client has its own `search_pages`: the proxy's becomes `vm_search_pages`, the
    model uses it for memory, and the client still gets its own `search_pages` calls."""
    client_search = _function("search_pages", "Search the web.")
    model = ScriptedModel(agent(LOCKER))
    history = [*conversation(80), {"role": "user", "content": QUESTION}]
    async with serve(model) as proxy:
        answer = await _ask(proxy.client, history, [client_search], stream)
        assert LOCKER_CODE in answer["content"] and not answer["tool_calls"]
        assert model.actions == ["search", "fault", "answer"]
        first = model.requests[0]
        names = tool_names(first)
        assert "search_pages" in names and "vm_search_pages" in names
        assert first["tools"][names.index("search_pages")] == client_search
        assert model.steps[0].decision.calls[0].name == "vm_search_pages"  # type: ignore[union-attr]

        model.queue(Calls([Call("search_pages", {"city": "Lisbon"})]))
        second = await _ask(proxy.client, [*history, {"role": "assistant", "content":
                            answer["content"]}, {"role": "user", "content": "Search it."}],
                            [client_search], stream)
    assert [c["function"]["name"] for c in second["tool_calls"]] == ["search_pages"]


async def _ask(client: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
               stream: bool) -> dict[str, Any]:
    """content and tool calls (name and arguments) of one reply, streamed or not."""
    if not stream:
        completion = await client.chat.completions.create(
            model=MODEL, messages=messages, tools=tools)
        message = completion.choices[0].message
        calls = [c.model_dump() for c in message.tool_calls or []]
        return {"content": message.content or "", "tool_calls": calls}
    chunks = [c async for c in await client.chat.completions.create(
        model=MODEL, messages=messages, tools=tools, stream=True)]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    by_index: dict[int, dict[str, Any]] = {}
    for c in chunks:
        for d in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            call = by_index.setdefault(d.index, {"function": {"name": None, "arguments": ""}})
            if d.function and d.function.name:
                call["function"]["name"] = d.function.name
            if d.function and d.function.arguments:
                call["function"]["arguments"] += d.function.arguments
    return {"content": content, "tool_calls": [by_index[i] for i in sorted(by_index)]}
