"""Turns of one session that arrive together are taken one after the other: each sees the
other's question and answer, and the session names the one path that holds all four."""

from __future__ import annotations

import asyncio

from tests.loop.harness import MODEL, serve, vm_settings
from tests.loop.history import LOCKER
from tests.loop.scripted import ScriptedModel, agent

SESSION = {"X-VM-Session": "busy-chat"}


async def test_two_turns_of_one_session_at_once_keep_both_answers() -> None:
    model = ScriptedModel(agent(LOCKER))
    model.delays = {1: 0.3}  # the first of the two concurrent turns answers slowly
    async with serve(model, vm_settings(context_budget=8000, pin_last_turns=4)) as proxy:
        await proxy.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello, who is there?"}],
            extra_headers=SESSION,
        )

        async def ask(text: str) -> str:
            completion = await proxy.client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": text}],
                extra_headers=SESSION,
            )
            return completion.choices[0].message.content or ""

        first = asyncio.create_task(ask("First of two at once?"))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(ask("Second of two at once, right?"))
        answers = await asyncio.gather(first, second)
        await ask("And now?")
    last = [(m["role"], m["content"]) for m in model.requests[-1]["messages"]
            if m["role"] in ("user", "assistant")]
    assert last == [
        ("user", "Hello, who is there?"), ("assistant", "Noted, thanks (4 words)."),
        ("user", "First of two at once?"), ("assistant", answers[0]),
        ("user", "Second of two at once, right?"), ("assistant", answers[1]),
        ("user", "And now?"),
    ]
