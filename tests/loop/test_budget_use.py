"""The budget goes to recall: a long conversation's first upstream prompt fills what the
budget leaves after the reply, with the pages that matter for the question, and faults
still fit beside it."""

from __future__ import annotations

import pytest

from proxy.tokens import counter_for_model
from proxy.vm.identity import chain_hashes
from tests.loop.harness import MODEL, reply_allowance, serve, upstream_cost, vm_settings
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import Answer, ScriptedModel, agent

COUNTER = counter_for_model(MODEL)


@pytest.mark.parametrize("budget", [2000, 4096, 8000])
@pytest.mark.parametrize("note", ["message", "leading"])
async def test_the_first_prompt_uses_the_budget_on_what_the_question_needs(
    budget: int, note: str
) -> None:
    model = ScriptedModel(agent(LOCKER))
    settings = vm_settings(context_budget=budget, activate_above=0, recall_share=1.0,
                           turn_note=note, developer_role="system")  # fmt: skip
    messages = [*conversation(160), {"role": "user", "content": QUESTION}]
    async with serve(model, settings) as proxy:
        completion = await proxy.client.chat.completions.create(model=MODEL, messages=messages)
    first = model.requests[0]
    room = budget - reply_allowance(first, settings)
    used = COUNTER.request(first)
    assert used >= 0.85 * room, (used, room)
    assert upstream_cost(first, settings) <= budget
    # What it was filled with: the question's fact, found without a fault.
    assert LOCKER_CODE in (completion.choices[0].message.content or "")
    assert len(model.requests) == 1


async def test_an_answer_keeps_the_assistants_name_so_the_resent_history_matches() -> None:
    model = ScriptedModel(lambda reading: Answer("Sure, see you at eight."))
    settings = vm_settings(activate_above=0, recall_share=1.0)
    messages = [{"role": "system", "content": "Two friends."}]
    for n in range(30):
        messages += [{"role": "user", "name": "Maya", "content": f"Turn {n}: how are you?"},
                     {"role": "assistant", "name": "Jon", "content": f"Fine, thanks ({n})."}]
    messages.append({"role": "user", "name": "Maya", "content": "Dinner at eight?"})
    async with serve(model, settings) as proxy:
        await proxy.client.chat.completions.create(model=MODEL, messages=messages)
        # The client resends the answer as it names the assistant's messages.
        resent = [*messages, {"role": "assistant", "name": "Jon",
                              "content": "Sure, see you at eight."}]
        hashes = chain_hashes(proxy.tenant, resent)
        found = await proxy.store.lookup_hashes(proxy.tenant, hashes)
    assert all(h in found for h in hashes)


async def test_a_request_under_the_threshold_whose_reply_would_overflow_gets_memory() -> None:
    """The budget holds the reply: a prompt under vm.activate_above that, with the
    max_tokens the client asks, would not fit is paged, not forwarded whole."""
    model = ScriptedModel(lambda reading: Answer("Noted."))
    settings = vm_settings(context_budget=3000, activate_above=3000, recall_share=1.0)
    messages = conversation(32)
    prompt = COUNTER.request({"model": MODEL, "messages": messages})
    assert 2000 < prompt < 3000, prompt
    async with serve(model, settings) as proxy:
        await proxy.client.chat.completions.create(model=MODEL, messages=messages)
        await proxy.client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=3000 - prompt + 100
        )
    forwarded, paged = model.requests
    assert len(forwarded["messages"]) == len(messages)  # no max_tokens: it fits, unchanged
    assert upstream_cost(paged, settings) <= 3000 and len(paged["messages"]) < len(messages)
