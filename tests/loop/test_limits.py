"""The loop's guards: the fault limit (tools withdrawn, the model must answer), the fault
token budget, repeated calls, unknown ids, and the hard cap on iterations. Whatever the
model does, the request ends with an answer or an OpenAI-shaped error, never a hang."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.tokens import counter_for_model
from proxy.vm.pages import parse_page_id
from tests.loop.harness import (
    MODEL,
    has_vm_tools,
    parse_sse,
    serve,
    tool_results,
    upstream_cost,
    vm_settings,
)
from tests.loop.history import FACT_TURN, LOCKER, QUESTION, conversation
from tests.loop.scripted import (
    Answer,
    Call,
    Calls,
    Decision,
    Policy,
    Reading,
    ScriptedModel,
    agent,
)

HISTORY_TURNS = 80
LAST_ID = 2 * HISTORY_TURNS + 1  # msg_<LAST_ID> is the question


COUNTER = counter_for_model(MODEL)


def _messages(question: str = QUESTION) -> list[dict[str, Any]]:
    return [*conversation(HISTORY_TURNS), {"role": "user", "content": question}]


def _fault(page: str, level: int = 0) -> Call:
    return Call("page_fault", {"page_id": page, "target_level": level})


def keeps_faulting(*, stubborn: bool = False) -> Policy:
    """Faults one more early message each time; answers once the tools are gone, unless
    `stubborn`, then it calls page_fault anyway."""

    def decide(reading: Reading) -> Decision:
        if "page_fault" not in reading.vm and not stubborn:
            return Answer("Giving up on memory.")
        page = f"msg_{1 + 2 * len(reading.fault_attempts)}"
        return Calls([_fault(page)])

    return decide


def keeps_searching(*, stubborn: bool = False) -> Policy:
    def decide(reading: Reading) -> Decision:
        if "search_pages" not in reading.vm and not stubborn:
            return Answer("Nothing more to search.")
        count = len(reading.vm_results("search_pages"))
        return Calls([Call("search_pages", {"query": f"gym visit number {count}"})])

    return decide


def _ok_faults(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in tool_results(body) if isinstance(r, dict) and "content" in r]


def _errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in tool_results(body) if isinstance(r, dict) and "error" in r]


def _says_tools_are_gone(result: dict[str, Any]) -> bool:
    """A limit_reached error, or a served fault whose note says the tools are withdrawn."""
    if result.get("code") == "limit_reached":
        return True
    note = str(result.get("note") or "").lower()
    return "content" in result and ("withdrawn" in note or "limit" in note)


async def test_fault_limit_withdraws_the_tools_and_the_model_answers() -> None:
    model = ScriptedModel(keeps_faulting())
    async with serve(model) as proxy:
        raw = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=_messages()
        )
        completion = raw.parse()
    limit = proxy.settings.vm.max_faults_per_turn
    assert completion.choices[0].message.content == "Giving up on memory."
    assert completion.choices[0].finish_reason == "stop"
    assert raw.headers["x-vm-faults"] == str(limit)
    assert model.actions == ["fault"] * limit + ["answer"]
    final = model.requests[-1]
    assert not has_vm_tools(final)
    # The last tool result told the model why the tools are gone.
    assert _says_tools_are_gone(tool_results(final)[-1])
    assert len(_ok_faults(final)) == limit
    assert all(has_vm_tools(body) for body in model.requests[:-1])


async def test_calls_past_the_limit_in_one_response_get_limit_reached() -> None:
    model = ScriptedModel(agent(LOCKER))
    limit = 3
    model.queue(Calls([_fault(f"msg_{n}") for n in (1, 3, 5, 7)]))
    async with serve(model, vm_settings(max_faults_per_turn=limit)) as proxy:
        completion = await proxy.client.chat.completions.create(
            model=MODEL, messages=_messages("Hello again!")
        )
    assert completion.choices[0].message.content
    second = model.requests[1]
    results = tool_results(second)
    assert [r.get("id") for r in results[:limit]] == ["msg_1", "msg_3", "msg_5"]
    assert results[limit]["code"] == "limit_reached"
    assert not has_vm_tools(second)


async def test_stubborn_faulting_after_the_tools_are_withdrawn_ends() -> None:
    """The model keeps calling page_fault once the tools are gone: the last iteration's
    text (none) is the answer, with finish_reason "stop", never a VM call."""
    model = ScriptedModel(keeps_faulting(stubborn=True))
    settings = vm_settings(max_loop_iterations=5)
    async with serve(model, settings) as proxy:
        completion = await proxy.client.chat.completions.create(
            model=MODEL, messages=_messages()
        )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None and choice.message.content is None
    assert len(model.requests) == settings.vm.max_loop_iterations
    assert [r["code"] for body in model.requests for r in _errors(body)] == ["limit_reached"]
    assert len(_ok_faults(model.requests[-1])) == settings.vm.max_faults_per_turn


async def test_fault_token_budget_serves_a_smaller_level() -> None:
    model = ScriptedModel(agent(LOCKER))
    fact = f"msg_{1 + 2 * FACT_TURN}"
    model.queue(Calls([_fault(fact, 0)]))
    budget = 40  # fewer tokens than the fact message's full text
    async with serve(model, vm_settings(max_fault_tokens_per_turn=budget)) as proxy:
        # A question that does not bring the fact into view already (prefetch maps the
        # pages relevant to the question, in full when they fit).
        completion = await proxy.client.chat.completions.create(
            model=MODEL, messages=_messages("Hello again!")
        )
    assert completion.choices[0].message.tool_calls is None
    result = tool_results(model.requests[1])[0]
    assert result["id"] == fact and result["level"] == 1
    assert result["note"] == "level 0 is over this turn's fault token budget; sent level 1"
    # What the faults brought (their texts, without the line headers) stays in the budget.
    lines = [line.partition(": ")[2] for r in _ok_faults(model.requests[-1])
             for line in r["content"].splitlines() if line.startswith("[msg_")]  # fmt: skip
    assert sum(COUNTER.text(text) for text in lines) <= budget


async def test_a_repeated_identical_call_is_refused() -> None:
    model = ScriptedModel(agent(LOCKER))
    search = Call("search_pages", {"query": "gym sauna"})
    model.queue(Calls([search]), Calls([search]), Calls([_fault("msg_3")]),
                Calls([_fault("msg_3")]), Answer("Done."))
    async with serve(model) as proxy:
        completion = await proxy.client.chat.completions.create(
            model=MODEL, messages=_messages("Hello again!")
        )
    assert completion.choices[0].message.content == "Done."
    results = tool_results(model.requests[-1])
    assert "results" in results[0]
    assert results[1]["code"] == "repeated_call" and "error" in results[1]
    assert results[2]["id"] == "msg_3"
    assert results[3]["code"] == "repeated_call"


async def test_an_unknown_id_is_answered_with_near_ids() -> None:
    model = ScriptedModel(agent(LOCKER))
    model.queue(Calls([_fault(f"msg_{LAST_ID + 2}")]), Answer("Done."))
    async with serve(model) as proxy:
        completion = await proxy.client.chat.completions.create(
            model=MODEL, messages=_messages("Hello again!")
        )
    assert completion.choices[0].message.content == "Done."
    result = tool_results(model.requests[1])[0]
    assert result["code"] == "unknown_id" and result["error"]
    assert result["near"] and all(isinstance(i, str) for i in result["near"])
    assert all(parse_page_id(i) is not None for i in result["near"])
    assert {f"msg_{LAST_ID - 1}", f"msg_{LAST_ID}"} & set(result["near"])


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("stubborn", [False, True], ids=["polite", "stubborn"])
async def test_hard_cap_on_iterations(stream: bool, stubborn: bool) -> None:
    model = ScriptedModel(keeps_searching(stubborn=stubborn))
    settings = vm_settings(max_loop_iterations=4)
    async with serve(model, settings) as proxy:
        response = await proxy.raw_chat(
            {"model": MODEL, "messages": _messages(), "stream": stream}
        )
    assert len(model.requests) == settings.vm.max_loop_iterations
    assert not has_vm_tools(model.requests[-1])  # the last call leaves the model no choice
    for body in model.requests:
        assert upstream_cost(body, settings) <= settings.vm.context_budget
    # Both forms end the same way: the last iteration's text (none, from a model that still
    # calls the withdrawn tools) with finish_reason "stop", never a VM call, never an error.
    assert response.status_code == 200
    if not stream:
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "stop" and not choice["message"].get("tool_calls")
        assert bool(choice["message"]["content"]) is not stubborn
        return
    events = [e for e in parse_sse(response.text) if e.data is not None]
    payloads = [e.json for e in events if e.data != "[DONE]"]
    assert events[-1].data == "[DONE]" and not any("error" in p for p in payloads)
    finishes = [ch["finish_reason"] for p in payloads for ch in p.get("choices", [])
                if ch["finish_reason"]]
    assert finishes == ["stop"]
    assert all("tool_calls" not in ch["delta"] for p in payloads for ch in p.get("choices", []))


def faults_every_hit(reading: Reading) -> Decision:
    """Searches widely, then faults, one by one, every page found, in full."""
    if "page_fault" not in reading.vm:
        return Answer("Read enough.")
    if not reading.searched:
        query = "bike gym sauna plan evening ideas garden trip"
        return Calls([Call(reading.vm["search_pages"], {"query": query, "limit": 20})])
    tried = set(reading.fault_attempts)
    offered = [hit for hit in reading.hits if hit not in tried]
    if not offered:
        return Answer("Read enough.")
    return Calls([_fault(offered[0], 0)])


async def test_faulted_pages_never_push_a_request_over_the_budget() -> None:
    """The fault token allowance (4000 by default) is larger than the whole budget here:
    what the faults bring in must still fit, by a smaller level or a refusal."""
    model = ScriptedModel(faults_every_hit)
    history = [*conversation(240), {"role": "user", "content": "Summarise everything."}]
    async with serve(model) as proxy:
        completion = await proxy.client.chat.completions.create(model=MODEL, messages=history)
    assert completion.choices[0].message.content == "Read enough."
    assert model.actions[:2] == ["search", "fault"] and len(model.requests) >= 3
    budget = proxy.settings.vm.context_budget
    costs = [upstream_cost(body, proxy.settings) for body in model.requests]
    prompts = [counter_for_model(MODEL).request(body) for body in model.requests]
    assert max(costs) <= budget, f"prompt+reply reserve {costs}, prompt alone {prompts}"


async def test_a_big_page_is_served_whole_when_the_prompt_leaves_room() -> None:
    """The packer keeps a quarter of the budget free for faults; a page larger than that
    still comes in full when the prompt actually leaves room for it (up to the configured
    fault tokens), rather than as its reduction."""
    lines = "\n".join(f"STEP_{n}_TIMEOUT_S = {n * 7 % 1000}.0  # step {n} of the pipeline"
                      for n in range(260))
    big = f"Here is our pipeline config:\n```python\n{lines}\n```"
    history = conversation(40)
    history[1] = {"role": "user", "content": big}
    model = ScriptedModel(agent(LOCKER))
    model.queue(Calls([_fault("msg_1", 0)]), Answer("Read it."))
    settings = vm_settings(context_budget=9000, max_fault_tokens_per_turn=6000)
    tokens = counter_for_model(MODEL).text(big)
    assert settings.vm.context_budget // 4 < tokens < 6000  # bigger than the reserve
    async with serve(model, settings) as proxy:
        completion = await proxy.client.chat.completions.create(
            model=MODEL, messages=[*history, {"role": "user", "content": "Hello again!"}]
        )
    assert completion.choices[0].message.content == "Read it."
    result = tool_results(model.requests[1])[0]
    assert result["id"] == "msg_1" and result["level"] == 0, result.get("note")
    assert upstream_cost(model.requests[1], settings) <= settings.vm.context_budget


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_cap_of_one_iteration_offers_no_vm_tools(stream: bool) -> None:
    """Both loops share one control: the last iteration goes without the VM tools, and on a
    cap of one that is the first (the streaming loop used to offer them and then answer
    with nothing once the model used one)."""
    model = ScriptedModel(keeps_searching())
    async with serve(model, vm_settings(max_loop_iterations=1)) as proxy:
        response = await proxy.raw_chat(
            {"model": MODEL, "messages": _messages(), "stream": stream}
        )
    assert response.status_code == 200
    assert len(model.requests) == 1 and not has_vm_tools(model.requests[0])
    assert model.actions == ["answer"]
