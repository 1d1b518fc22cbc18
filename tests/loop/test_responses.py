"""`POST /v1/responses` with memory, as the real `openai` SDK meets it: a long conversation,
a fact from early in it recalled through search_pages and page_fault by a stateless
Responses upstream, streaming and not; the VM calls never reach the client, every upstream
request stays within the budget, and `previous_response_id` continues the conversation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.tokens import counter_for_model
from tests.loop.harness import MODEL, Proxy, parse_sse, serve, vm_settings
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import Call, Calls, agent
from tests.loop.scripted_responses import ResponsesModel, chat_view
from tests.support.whole_parses import WholeParses

ANSWER = f"Your locker code is {LOCKER_CODE}."
VM_NAMES = {"page_fault", "search_pages"}


def as_responses(history: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """A chat history as a Responses client sends it: instructions and input items."""
    instructions = history[0]["content"]
    items = [{"role": m["role"], "content": m["content"]} for m in history[1:]]
    return instructions, items


def upstream_cost(body: dict[str, Any], budget_reply: int) -> int:
    reply = body.get("max_output_tokens") or budget_reply
    return counter_for_model(MODEL).request(chat_view(body)) + int(reply)


def assert_within_budget(proxy: Proxy, bodies: list[dict[str, Any]]) -> None:
    vm = proxy.settings.vm
    reply = min(vm.reply_reserve_tokens, vm.context_budget // 5)
    for body in bodies:
        assert upstream_cost(body, reply) <= vm.context_budget
        assert "previous_response_id" not in body  # the proxy owns the context


def summed(usages: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("input_tokens", "output_tokens", "total_tokens")
    return {k: sum(u[k] for u in usages) for k in keys}


@pytest.fixture
def history() -> list[dict[str, Any]]:
    return conversation(120)


async def test_recall_not_streaming(history: list[dict[str, Any]]) -> None:
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(history)
    async with serve(model, path="/responses") as proxy:
        raw = await proxy.client.responses.with_raw_response.create(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": QUESTION}],
        )
        response = raw.parse()
    assert model.actions == ["search", "fault", "answer"]
    assert response.output_text == ANSWER
    assert [item.type for item in response.output] == ["message"]
    assert response.id.startswith("resp_") and response.id != "resp_scripted003"
    assert response.usage is not None
    assert response.usage.model_dump(include={"input_tokens", "output_tokens",
                                              "total_tokens"}) == summed(model.usages())
    assert response.instructions == instructions and response.tools == []
    assert raw.headers["x-vm-faults"] == "1"
    assert_within_budget(proxy, model.requests)
    first = model.requests[0]
    assert {t["name"] for t in first["tools"]} == VM_NAMES
    assert all(t["type"] == "function" for t in first["tools"])
    assert "instructions" not in first and first["input"][0]["role"] in ("developer", "system")
    # The loop's later calls carry the VM exchange as function_call items and outputs.
    later = model.requests[2]["input"]
    assert [i["type"] for i in later if i.get("type")][-4:] == [
        "function_call", "function_call_output", "function_call", "function_call_output"]


async def test_recall_streaming(history: list[dict[str, Any]]) -> None:
    model = ResponsesModel(agent(LOCKER), reasoning=True)
    instructions, items = as_responses(history)
    async with serve(model, path="/responses") as proxy:
        async with proxy.client.responses.stream(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": QUESTION}],
        ) as stream:
            events = [event async for event in stream]
            final = await stream.get_final_response()
    assert model.actions == ["search", "fault", "answer"]
    assert final.output_text == ANSWER
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds.count("response.created") == 1 and kinds[-1] == "response.completed"
    assert kinds.count("response.completed") == 1
    assert not any("function_call" in kind for kind in kinds)
    # Three reasoning items (one per upstream call) and the answer, numbered in order.
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [e.output_index for e in added] == [0, 1, 2, 3]
    assert [e.item.type for e in added] == ["reasoning", "reasoning", "reasoning", "message"]
    assert [i.type for i in final.output] == ["reasoning", "reasoning", "reasoning", "message"]
    assert len({e.response.id for e in events if hasattr(e, "response")}) == 1
    assert final.usage is not None
    assert final.usage.model_dump(include={"input_tokens", "output_tokens",
                                           "total_tokens"}) == summed(model.usages())
    assert_within_budget(proxy, model.requests)
    # Reasoning items are replayed to the upstream with the call that followed them.
    replay = model.requests[1]["input"]
    kinds_sent = [i.get("type") for i in replay]
    at = kinds_sent.index("reasoning")
    assert kinds_sent[at + 1] == "function_call"
    assert replay[at]["encrypted_content"] == "opaque-1"  # as closed, not as opened


async def test_raw_stream_is_one_clean_event_stream(history: list[dict[str, Any]]) -> None:
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(history)
    async with serve(model, path="/responses") as proxy:
        raw = await proxy.http.post(
            "/v1/responses", headers={"authorization": "Bearer sk-test"},
            json={"model": MODEL, "instructions": instructions, "stream": True,
                  "input": [*items, {"role": "user", "content": QUESTION}]},
        )
    events = [e for e in parse_sse(raw.text) if e.data is not None]
    for event in events:
        assert event.event == event.json["type"]
        assert "page_fault" not in event.data and "search_pages" not in event.data
    text = "".join(e.json["delta"] for e in events
                   if e.json["type"] == "response.output_text.delta")
    assert text == ANSWER
    completed = events[-1].json["response"]
    assert completed["status"] == "completed"
    assert [i["type"] for i in completed["output"]] == ["message"]


async def test_previous_response_id_continues_the_conversation(
    history: list[dict[str, Any]],
) -> None:
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(history)
    async with serve(model, path="/responses") as proxy:
        first = await proxy.client.responses.create(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": "Thanks for all the tips so far."}],
        )
        mark = len(model.requests)
        second = await proxy.client.responses.create(
            model=MODEL, instructions=instructions, previous_response_id=first.id,
            input=QUESTION,
        )
        again = await proxy.client.responses.create(
            model=MODEL, previous_response_id=second.id, input="And once more: " + QUESTION,
        )
    assert second.output_text == ANSWER and second.previous_response_id == first.id
    assert again.output_text == ANSWER
    assert model.actions[mark - 1 :].count("answer") == 3
    # The upstream got the conversation from the proxy, never an id to look it up by.
    for body in model.requests[mark:]:
        assert "previous_response_id" not in body
        sent = json.dumps(body["input"])
        assert "Thanks for all the tips so far." in sent or "msg_" in sent
    assert_within_budget(proxy, model.requests)


async def test_unknown_previous_response_id_is_a_400() -> None:
    model = ResponsesModel(agent(LOCKER))
    async with serve(model, path="/responses") as proxy:
        raw = await proxy.http.post(
            "/v1/responses", headers={"authorization": "Bearer sk-test"},
            json={"model": MODEL, "input": "hi", "previous_response_id": "resp_nope"},
        )
    assert raw.status_code == 400
    assert raw.json()["error"] == {
        "message": "Previous response with id 'resp_nope' not found.",
        "type": "invalid_request_error", "param": "previous_response_id",
        "code": "previous_response_not_found"}
    assert model.requests == []


async def test_another_tenant_cannot_continue_a_response(
    history: list[dict[str, Any]],
) -> None:
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(history)
    async with serve(model, path="/responses") as proxy:
        first = await proxy.client.responses.create(
            model=MODEL, instructions=instructions, input=items[:-1] + [
                {"role": "user", "content": "hello"}])
        raw = await proxy.http.post(
            "/v1/responses", headers={"authorization": "Bearer sk-other"},
            json={"model": MODEL, "input": QUESTION, "previous_response_id": first.id},
        )
    assert raw.status_code == 400
    assert raw.json()["error"]["code"] == "previous_response_not_found"


async def test_client_function_calls_reach_the_client(history: list[dict[str, Any]]) -> None:
    weather = {"type": "function", "name": "get_weather", "description": "The weather.",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    model = ResponsesModel(agent(LOCKER))
    model.queue(
        Calls([Call("search_pages", {"query": "weather"})]),
        Calls([Call("get_weather", {"city": "Porto"})], text="Checking the weather."),
    )
    instructions, items = as_responses(history)
    async with serve(model, path="/responses") as proxy:
        response = await proxy.client.responses.create(
            model=MODEL, instructions=instructions, tools=[weather],
            input=[*items, {"role": "user", "content": "Weather in Porto?"}],
        )
        calls = [i for i in response.output if i.type == "function_call"]
        assert [c.name for c in calls] == ["get_weather"]
        follow = await proxy.client.responses.create(
            model=MODEL, instructions=instructions, tools=[weather],
            previous_response_id=response.id,
            input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                    "output": "Sunny, 24 C"}],
        )
    assert response.tools[0].name == "get_weather" and len(response.tools) == 1
    assert [i.type for i in response.output] == ["message", "function_call"]
    assert follow.status == "completed"
    last = model.requests[-1]
    tail = [i.get("type") for i in last["input"]][-3:]
    assert "function_call" in tail and tail[-1] in ("function_call_output", "message", None)
    outputs = [i for i in last["input"] if i.get("type") == "function_call_output"]
    assert outputs[-1]["output"] == "Sunny, 24 C"
    assert outputs[-1]["call_id"] == calls[0].call_id
    assert_within_budget(proxy, model.requests)


async def test_store_false_and_settings_reach_the_upstream(
    history: list[dict[str, Any]],
) -> None:
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(history)
    async with serve(model, path="/responses") as proxy:
        response = await proxy.client.responses.create(
            model=MODEL, instructions=instructions, store=False, max_output_tokens=200,
            metadata={"app": "test"}, temperature=0.2,
            text={"format": {"type": "text"}},
            input=[*items, {"role": "user", "content": QUESTION}],
        )
    assert response.output_text == ANSWER
    for body in model.requests:
        assert body["store"] is False and body["metadata"] == {"app": "test"}
        assert body["temperature"] == 0.2 and body["max_output_tokens"] == 200
    assert response.store is False and response.max_output_tokens == 200


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_chat_upstream_serves_responses_clients(
    history: list[dict[str, Any]], stream: bool
) -> None:
    from tests.loop.scripted import ScriptedModel

    model = ScriptedModel(agent(LOCKER))
    instructions, items = as_responses(history)
    request = {"model": MODEL, "instructions": instructions,
               "input": [*items, {"role": "user", "content": QUESTION}]}
    async with serve(model, vm_settings(responses="chat")) as proxy:
        if stream:
            async with proxy.client.responses.stream(**request) as events:
                seen = [event async for event in events]
                final = await events.get_final_response()
            assert [e.sequence_number for e in seen] == list(range(len(seen)))
        else:
            final = await proxy.client.responses.create(**request)
    assert model.actions == ["search", "fault", "answer"]
    assert final.output_text == ANSWER
    assert [i.type for i in final.output] == ["message"]
    for body in model.requests:
        assert "messages" in body and "input" not in body
        assert not any("vm_items" in m for m in body["messages"])
    assert final.usage is not None and final.usage.total_tokens == sum(
        u["total_tokens"] for u in model.usages())


async def test_chat_upstream_below_the_threshold() -> None:
    from tests.loop.scripted import ScriptedModel

    model = ScriptedModel(agent(LOCKER))
    async with serve(model, vm_settings(responses="chat")) as proxy:
        first = await proxy.client.responses.create(model=MODEL, input="Hello there!")
        second = await proxy.client.responses.create(
            model=MODEL, input="How are you?", previous_response_id=first.id)
    assert first.output_text.startswith("Noted") and second.output_text.startswith("Noted")
    assert model.requests[1]["messages"][:3] == [
        {"role": "user", "content": "Hello there!"},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "How are you?"}]
    assert "tools" not in model.requests[1]


async def test_continuing_an_earlier_response_branches(history: list[dict[str, Any]]) -> None:
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(history)
    async with serve(model, path="/responses") as proxy:
        first = await proxy.client.responses.create(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": "Hello again."}])
        one = await proxy.client.responses.create(
            model=MODEL, previous_response_id=first.id, input="My bike is red.")
        other = await proxy.client.responses.create(
            model=MODEL, previous_response_id=first.id, input="My bike is blue.")
        after = await proxy.client.responses.create(
            model=MODEL, previous_response_id=one.id, input="And my car?")

        async def texts(response_id: str) -> list[str]:
            conv_id, length = await proxy.store.find_response(proxy.tenant, response_id)
            path = await proxy.store.path(proxy.tenant, conv_id)
            pages = await proxy.store.pages_in_range(path, length - 4, length)
            return [p.text for p in pages]

        assert (await texts(other.id))[-2:-1] == ["My bike is blue."]
        assert "My bike is red." not in await texts(other.id)
        assert "My bike is red." in await texts(after.id)
        assert "My bike is blue." not in await texts(after.id)


async def test_a_restart_continues_the_chain(
    history: list[dict[str, Any]], tmp_path: Any
) -> None:
    from proxy.store import open_store

    url = f"sqlite:///{tmp_path}/vm.db"
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(history)
    async with serve(model, path="/responses", store=await open_store(url)) as proxy:
        first = await proxy.client.responses.create(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": "Hello again."}])
    async with serve(model, path="/responses", store=await open_store(url)) as proxy:
        second = await proxy.client.responses.create(
            model=MODEL, previous_response_id=first.id, input=QUESTION)
    assert second.output_text == ANSWER
    assert model.actions[-3:] == ["search", "fault", "answer"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_history_resent_as_the_sdk_resends_it_reads_as_a_whole_one(
    history: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    # The client resends its history and each answer's output items, turn after turn; the
    # proxy reads the repeated items from the request before (proxy.http.resent) and must
    # see what a whole parse of each body gives. The last question is answered from early
    # in the conversation, through the memory, as when every body is parsed whole.
    from proxy.http import responses_validation, routes
    from proxy.http.validation import parse_json_object

    seen: list[tuple[bytes, dict[str, Any], Any]] = []
    handle = routes.handle_responses

    async def recording(state: Any, request: Any, body: Any, raw: bytes,
                        messages: Any = None) -> Any:
        seen.append((raw, body, messages))
        return await handle(state, request, body, raw, messages)

    monkeypatch.setattr(routes, "handle_responses", recording)
    whole_parses = WholeParses(monkeypatch, responses_validation)
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(history)
    async with serve(model, path="/responses") as proxy:
        for number in range(4):
            question = QUESTION if number == 3 else f"And what about topic {number}?"
            items = [*items, {"role": "user", "content": question}]
            if stream:
                events = await proxy.client.responses.create(
                    model=MODEL, instructions=instructions, input=items, stream=True)
                async for event in events:
                    if event.type == "response.completed":
                        response = event.response
            else:
                response = await proxy.client.responses.create(
                    model=MODEL, instructions=instructions, input=items)
            items = [*items, *response.output]  # as the SDK's users resend them
    assert response.output_text == ANSWER
    assert whole_parses.count == 1  # the first; the others read only their new items
    for raw, body, messages in seen:
        whole = parse_json_object(raw)
        assert body == whole
        assert messages == responses_validation.validate_responses_request(whole)
