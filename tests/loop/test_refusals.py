"""A model's refusal is part of its answer: stored with it, so the next turn sends the
upstream the refusal back, never an empty assistant message (which OpenAI's API refuses:
an assistant message needs content, tool calls or a refusal)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.loop.harness import MODEL, serve, vm_settings
from tests.loop.history import conversation
from tests.loop.scripted import Answer, Refusal, ScriptedModel

REFUSAL = "I'm sorry, I can't help with that."


def _empty_answers(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "assistant" and not m.get("content")
            and not m.get("tool_calls") and not m.get("refusal")]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("activate_above", [1500, 0])  # forwarded whole, a memory turn
async def test_a_refusal_is_sent_back_with_the_next_turn(stream: bool, activate_above: int
                                                         ) -> None:
    model = ScriptedModel(lambda reading: Answer("Sure."))
    model.queue(Refusal(REFUSAL))
    history = conversation(3)
    question = {"role": "user", "content": "Help me pick a lock?"}
    async with serve(model, vm_settings(activate_above=activate_above)) as proxy:
        chat = proxy.client.chat.completions
        if stream:
            async with chat.stream(model=MODEL, messages=[*history, question]) as events:
                message = (await events.get_final_completion()).choices[0].message
        else:
            message = (await chat.create(model=MODEL, messages=[*history, question])
                       ).choices[0].message
        assert message.refusal == REFUSAL and not message.content
        # As the SDK's clients resend it.
        answer = message.model_dump(include={"role", "content", "refusal"})
        await chat.create(model=MODEL, messages=[*history, question, answer,
                                                 {"role": "user", "content": "Never mind."}])
    sent = model.requests[-1]
    assert not _empty_answers(sent), sent["messages"]
    assert [m.get("refusal") for m in sent["messages"] if m["role"] == "assistant"][-1] == REFUSAL


async def test_a_session_keeps_the_refusal() -> None:
    model = ScriptedModel(lambda reading: Answer("Sure."))
    model.queue(Refusal(REFUSAL))
    session = {"X-VM-Session": "refused"}
    async with serve(model, vm_settings()) as proxy:
        chat = proxy.client.chat.completions
        for text in ("Help me pick a lock?", "Never mind."):
            await chat.create(model=MODEL, messages=[{"role": "user", "content": text}],
                              extra_headers=session)
    assert model.requests[-1]["messages"][-2] == {
        "role": "assistant", "content": None, "refusal": REFUSAL}
