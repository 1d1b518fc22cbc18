"""What X-VM-Session names is the request's own conversation: never a longer one that only
shares its opening, and a repeated first message in append mode is a new turn."""

from __future__ import annotations

from typing import Any

from tests.loop.harness import MODEL, serve, vm_settings
from tests.loop.history import LOCKER
from tests.loop.scripted import ScriptedModel, agent


def _texts(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], str(m["content"])) for m in body["messages"]
            if m["role"] in ("user", "assistant")]


async def test_a_shared_opening_does_not_hand_over_another_conversation() -> None:
    """Two people behind one API key (one tenant) both open with "Hello"."""
    model = ScriptedModel(agent(LOCKER))
    async with serve(model, vm_settings(context_budget=8000)) as proxy:
        alice = [{"role": "user", "content": "Hello"}]
        first = await proxy.client.chat.completions.create(model=MODEL, messages=alice)
        alice += [{"role": "assistant", "content": first.choices[0].message.content},
                  {"role": "user", "content": "Note that my PIN is 9999."}]
        raw = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=alice)
        alices = raw.headers["x-vm-session"]

        raw = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello"}])
        bobs = raw.headers["x-vm-session"]
        assert bobs != alices
        since = model.mark()
        await proxy.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "What did I tell you?"}],
            extra_headers={"X-VM-Session": bobs})
    sent = _texts(model.requests[since])
    assert not any("9999" in text for _, text in sent)
    assert sent == [("user", "Hello"), ("assistant", "Noted, thanks (1 words)."),
                    ("user", "What did I tell you?")]


async def test_saying_the_first_thing_again_in_append_mode_is_a_new_turn() -> None:
    model = ScriptedModel(agent(LOCKER))
    session = {"X-VM-Session": "greetings"}
    async with serve(model, vm_settings(context_budget=8000)) as proxy:
        for _ in range(2):
            await proxy.client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}],
                extra_headers=session)
    assert _texts(model.requests[-1]) == [
        ("user", "hi"), ("assistant", "Noted, thanks (1 words)."), ("user", "hi")]
