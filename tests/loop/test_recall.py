"""A fact from turn 5 of a 240-turn conversation, asked for at the end: the model finds it
with search_pages then page_fault, and the client only ever sees the answer."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.vm.identity import chain_hashes
from tests.loop.harness import (
    MODEL,
    Proxy,
    serve,
    sum_usage,
    tool_results,
    upstream_cost,
    vm_message,
    vm_settings,
)
from tests.loop.history import (
    CLAIM_MESSAGE,
    FACT_TURN,
    LOCKER,
    LOCKER_CODE,
    QUESTION,
    conversation,
)
from tests.loop.scripted import ScriptedModel, agent
from tests.support.whole_parses import WholeParses

FACT_ID = f"msg_{1 + 2 * FACT_TURN}"  # the system prompt is msg_0
INTERMEDIATE_TURNS = (60, 150)


async def _intermediate_turns(proxy: Proxy, history: list[dict[str, Any]]) -> list[str]:
    """Send a few earlier turns through the proxy, as the chat app would have, keeping the
    answers it got in the history it resends. Returns each turn's X-VM-Session."""
    sessions: list[str] = []
    full_costs: list[int] = []
    for turn in INTERMEDIATE_TURNS:
        end = 2 + 2 * turn  # up to and including this turn's user message
        raw = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=history[:end]
        )
        completion = raw.parse()
        answer = completion.choices[0].message.content
        assert answer and answer.startswith("Noted")
        history[end] = {"role": "assistant", "content": answer}
        sessions.append(raw.headers["x-vm-session"])
        full_costs.append(int(raw.headers["x-vm-prompt-tokens-full"]))
    assert full_costs == sorted(full_costs) and full_costs[0] < full_costs[-1]
    return sessions


def _assert_recall_requests(proxy: Proxy, since: int) -> None:
    model, settings = proxy.model, proxy.settings
    assert model.actions[since:] == ["search", "fault", "answer"]
    search, fault, answer = model.requests[since:]
    # The search asked the question; the fault loaded the fact's page in full.
    assert model.steps[since].decision.calls[0].arguments == {"query": QUESTION}  # type: ignore[union-attr]
    assert model.steps[since + 1].decision.calls[0].arguments == {  # type: ignore[union-attr]
        "page_id": FACT_ID, "target_level": 0}
    hits = tool_results(fault)[-1]
    assert hits["query"] == QUESTION and hits["results"][0]["id"] == FACT_ID
    assert set(hits["results"][0]) == {"id", "hint"}  # strict mode: a hint, never the page
    page = tool_results(answer)[-1]
    assert page["id"] == FACT_ID and page["level"] == 0 and LOCKER_CODE in page["content"]
    assert set(page) == {"id", "level", "content"}
    # The faulted message as a transcript line, with the turns around it.
    lines = page["content"].splitlines()
    assert any(line.startswith(f"[{FACT_ID}] user: ") for line in lines)
    assert lines[0].startswith("[msg_10] ") and lines[-1].startswith("[msg_12] ")
    for body in model.requests[since:]:
        assert vm_message(body) is not None
        assert LOCKER_CODE not in vm_message(body)  # not visible before the fault
        cost = upstream_cost(body, settings)
        assert cost <= settings.vm.context_budget, (cost, len(body["messages"]))


async def test_recall_non_streaming(history: list[dict[str, Any]]) -> None:
    model = ScriptedModel(agent(LOCKER))
    async with serve(model) as proxy:
        sessions = await _intermediate_turns(proxy, history)
        since = model.mark()
        messages = [*history, {"role": "user", "content": QUESTION}]
        raw = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages
        )
        completion = raw.parse()

        choice = completion.choices[0]
        assert LOCKER_CODE in (choice.message.content or "")
        assert choice.message.tool_calls is None
        assert choice.finish_reason == "stop"
        _assert_recall_requests(proxy, since)

        headers = raw.headers
        assert headers["x-vm-session"] == sessions[0] == sessions[1]
        assert headers["x-vm-faults"] == "1"
        sent, full = int(headers["x-vm-prompt-tokens"]), int(headers["x-vm-prompt-tokens-full"])
        assert 0 < sent < full
        assert completion.usage is not None
        assert completion.usage.model_dump(include={
            "prompt_tokens", "completion_tokens", "total_tokens"}) == sum_usage(
                model.usages(since))

        # The answer is stored: a resend with it appended is a known prefix.
        stored = [*messages, {"role": "assistant", "content": choice.message.content}]
        hashes = chain_hashes(proxy.tenant, stored)
        found = await proxy.store.lookup_hashes(proxy.tenant, hashes)
        assert all(h in found for h in hashes)


async def test_recall_streaming(history: list[dict[str, Any]]) -> None:
    model = ScriptedModel(agent(LOCKER))
    async with serve(model) as proxy:
        await _intermediate_turns(proxy, history)
        since = model.mark()
        raw = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[*history, {"role": "user", "content": QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in raw.parse()]

        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert LOCKER_CODE in text
        assert all(not c.choices or c.choices[0].delta.tool_calls is None for c in chunks)
        finishes = [c.choices[0].finish_reason for c in chunks
                    if c.choices and c.choices[0].finish_reason]
        assert finishes == ["stop"]
        with_usage = [c for c in chunks if c.usage is not None]
        assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
        assert chunks[-1].choices == []
        assert with_usage[0].usage.model_dump(include={  # type: ignore[union-attr]
            "prompt_tokens", "completion_tokens", "total_tokens"}) == sum_usage(
                model.usages(since))
        _assert_recall_requests(proxy, since)
        assert all(body["stream"] is True for body in model.requests[since:])

        headers = raw.headers
        assert headers["x-vm-session"]
        assert 0 < int(headers["x-vm-prompt-tokens"]) < int(headers["x-vm-prompt-tokens-full"])


async def test_recall_of_a_claim_with_prefetch() -> None:
    """The same fact said plainly ("my locker code is ..."), with prefetch on: however the
    VM core brings it in (claim page, prefetch, search), the answer is right, the client
    sees no VM call and every upstream request fits the budget."""
    history = conversation(200, fact=CLAIM_MESSAGE)
    model = ScriptedModel(agent(LOCKER))
    settings = vm_settings(recall_share=1.0)
    async with serve(model, settings) as proxy:
        completion = await proxy.client.chat.completions.create(
            model=MODEL, messages=[*history, {"role": "user", "content": QUESTION}]
        )
        assert LOCKER_CODE in (completion.choices[0].message.content or "")
        assert completion.choices[0].message.tool_calls is None
        assert model.actions[-1] == "answer" and len(model.requests) <= 3
        for body in model.requests:
            assert upstream_cost(body, settings) <= settings.vm.context_budget


async def test_client_never_sees_vm_tools_when_the_fact_is_missing() -> None:
    """Nothing to find: the model searches, faults the hits it gets, gives up; the client
    gets "I don't know" and no VM call, and the faults stay within the limit."""
    history = conversation(120, fact_turn=None)
    model = ScriptedModel(agent(LOCKER))
    async with serve(model) as proxy:
        raw = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[*history, {"role": "user", "content": QUESTION}]
        )
        completion = raw.parse()
        assert completion.choices[0].message.content == "I don't know."
        assert completion.choices[0].message.tool_calls is None
        assert model.actions[0] == "search" and model.actions[-1] == "answer"
        assert int(raw.headers["x-vm-faults"]) <= proxy.settings.vm.max_faults_per_turn


@pytest.mark.parametrize("stream", [False, True])
async def test_recall_over_turns_that_resend_the_history_byte_for_byte(
    history: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    # Each turn resends the last one's messages, its answer and a new question, as the
    # openai SDK writes them: the proxy reads the repeated messages from the request
    # before (proxy.http.resent) and must see what a whole parse of each body gives,
    # recalling the fact at the end as it does when every body is parsed whole.
    from proxy.http import routes, validation

    seen: list[tuple[bytes, dict[str, Any]]] = []
    handle = routes.handle_chat

    async def recording(state: Any, request: Any, body: Any, raw: bytes) -> Any:
        seen.append((raw, body))
        return await handle(state, request, body, raw)

    monkeypatch.setattr(routes, "handle_chat", recording)
    whole_parses = WholeParses(monkeypatch, validation)
    model = ScriptedModel(agent(LOCKER))
    messages = list(history)
    async with serve(model) as proxy:
        for number in range(4):
            question = QUESTION if number == 3 else f"And what about topic {number}?"
            messages = [*messages, {"role": "user", "content": question}]
            if stream:
                chunks = await proxy.client.chat.completions.create(
                    model=MODEL, messages=messages, stream=True)
                text = "".join([chunk.choices[0].delta.content or "" async for chunk in chunks
                                if chunk.choices])
                answer: dict[str, Any] = {"role": "assistant", "content": text}
            else:
                completion = await proxy.client.chat.completions.create(
                    model=MODEL, messages=messages)
                answer = completion.choices[0].message.model_dump(exclude_none=True)
            messages = [*messages, answer]
    assert LOCKER_CODE in (answer["content"] or "")
    assert whole_parses.count == 1  # the first; the others read only their new messages
    for raw, body in seen:
        whole = whole_parses.parse(raw)
        validation.validate_chat_request(whole)
        assert body == whole
