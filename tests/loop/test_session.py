"""`X-VM-Session` with server-side state: the client sends only each turn's new message; the
proxy rebuilds the context from the store and keeps every answer."""

from __future__ import annotations

from typing import Any

from tests.loop.harness import MODEL, serve, upstream_cost, vm_message, vm_settings
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import ScriptedModel, agent

SESSION = {"X-VM-Session": "my-chat"}


def _assistant_texts(body: dict[str, Any]) -> list[str]:
    """The real assistant messages of an upstream body (pinned turns), in order."""
    return [str(m.get("content")) for m in body["messages"]
            if m["role"] == "assistant" and not m.get("tool_calls")]


# Room for two pinned turns beside the manifest (at 3000 the packer has 512 tokens left
# once the loop's reserve is taken; see test_pinned_turns_fit_a_small_budget).
ROOMY = {"context_budget": 8000, "pin_last_turns": 2}


async def test_only_new_messages_each_turn() -> None:
    model = ScriptedModel(agent(LOCKER))
    history = conversation(80)
    async with serve(model, vm_settings(**ROOMY)) as proxy:
        first = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[*history, {"role": "user", "content": "Hello, first one?"}],
            extra_headers=SESSION,
        )
        first_answer = first.parse().choices[0].message.content
        assert first_answer == "Noted, thanks (3 words)."
        assert first.headers["x-vm-session"] == "my-chat"

        since = model.mark()
        second = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "Second message, still here?"}],
            extra_headers=SESSION, stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in second.parse()
                        if c.choices])
        assert text == "Noted, thanks (4 words)."
        assert second.headers["x-vm-session"] == "my-chat"
        body = model.requests[since]
        # VM is active although the request alone is tiny: the stored conversation counts.
        assert vm_message(body) is not None
        assert _assistant_texts(body)[-1:] == [first_answer]  # pinned, verbatim
        assert int(second.headers["x-vm-prompt-tokens-full"]) > proxy.settings.vm.activate_above

        since = model.mark()
        third = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTION}],
            extra_headers=SESSION,
        )
        answer = third.parse().choices[0].message.content or ""
        assert LOCKER_CODE in answer  # turn 5 of the first request, rebuilt from the store
        # Mapped ahead or faulted in, depending on what the working set holds.
        assert model.actions[since:] in (["answer"], ["search", "fault", "answer"])
        assert third.headers["x-vm-session"] == "my-chat"
        assert int(third.headers["x-vm-faults"]) == len(model.actions[since:]) // 2
        assert _assistant_texts(model.requests[since])[-1:] == [text]  # the streamed answer

        # Everything is on the one conversation: the history, three questions, three answers.
        conv_id = await proxy.store.resolve_session(proxy.tenant, "my-chat")
        assert conv_id is not None
        conv = await proxy.store.get_conversation(proxy.tenant, conv_id)
        assert conv is not None and conv.length == len(history) + 6


async def test_a_full_resend_under_the_session_name_is_aligned_not_duplicated() -> None:
    model = ScriptedModel(agent(LOCKER))
    history = [*conversation(80), {"role": "user", "content": "Hello, first one?"}]
    async with serve(model) as proxy:
        first = await proxy.client.chat.completions.create(
            model=MODEL, messages=history, extra_headers=SESSION)
        answer = first.choices[0].message.content
        resend = [*history, {"role": "assistant", "content": answer},
                  {"role": "user", "content": "And again?"}]
        await proxy.client.chat.completions.create(
            model=MODEL, messages=resend, extra_headers=SESSION)
        conv_id = await proxy.store.resolve_session(proxy.tenant, "my-chat")
        assert conv_id is not None
        conv = await proxy.store.get_conversation(proxy.tenant, conv_id)
        assert conv is not None and conv.length == len(resend) + 1


async def test_pinned_turns_fit_a_small_budget() -> None:
    """`pin_last_turns` = 2: the previous turn goes upstream verbatim even at the small
    budget of these tests (DESIGN: pinned pages are never evicted)."""
    model = ScriptedModel(agent(LOCKER))
    history = [*conversation(80), {"role": "user", "content": "Hello, first one?"}]
    async with serve(model, vm_settings(pin_last_turns=2)) as proxy:
        first = await proxy.client.chat.completions.create(model=MODEL, messages=history)
        answer = first.choices[0].message.content
        await proxy.client.chat.completions.create(model=MODEL, messages=[
            *history, {"role": "assistant", "content": answer},
            {"role": "user", "content": "Second message, still here?"}])
    body = model.requests[-1]
    # The real messages (this turn's VM block, a developer message, may follow the question).
    roles = [m["role"] for m in body["messages"][1:] if "<VM:" not in str(m.get("content"))]
    assert roles[-3:] == ["user", "assistant", "user"], roles
    assert _assistant_texts(body)[-1:] == [answer]
    assert upstream_cost(body, proxy.settings) <= proxy.settings.vm.context_budget
