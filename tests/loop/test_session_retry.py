"""A session turn the client retries after its answer was stored but never reached it (the
proxy died, or the connection broke, between the two): the question is not stored again,
and the session goes on with the answer the client did get. A retry after an answer that
did reach the client is of another request (the same question asked again, lost on its
way): a new turn."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from proxy.store import open_store
from tests.loop.harness import MODEL, fresh_store, serve, store_url, vm_settings
from tests.loop.history import conversation
from tests.loop.scripted import Answer, ScriptedModel

SESSION = {"X-VM-Session": "retried-chat"}
RETRY = {**SESSION, "x-stainless-retry-count": "1"}


def _numbered() -> ScriptedModel:
    count = iter(range(1, 100))
    return ScriptedModel(lambda reading: Answer(f"Answer {next(count)}."))


@contextmanager
def _undelivered(proxy: Any) -> Iterator[None]:
    """The responses sent meanwhile never reach their client whole (no delivery noted)."""
    deliveries = proxy.app.state.deliveries
    deliveries.note = lambda tenant, session: None
    try:
        yield
    finally:
        del deliveries.note


def _texts(body: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in body["messages"] if m["role"] in ("user", "assistant")]


@pytest.mark.parametrize("system_each_turn", [False, True])
@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"])
async def test_a_retried_question_is_not_stored_twice(
    system_each_turn: bool, backend: str, tmp_path: Any
) -> None:
    async with fresh_store(backend, tmp_path) as url:
        await _retried(system_each_turn, url)


async def _retried(system_each_turn: bool, url: str) -> None:
    model = _numbered()
    system = [{"role": "system", "content": "Be brief."}]
    history = conversation(3)
    # (Forwarded whole, the history rebuilt from the store.)
    async with serve(model, vm_settings(), await open_store(url)) as proxy:
        chat = proxy.client.chat.completions
        with _undelivered(proxy):
            await chat.create(model=MODEL, messages=[*system, *history,
                                                     {"role": "user", "content": "Lunch?"}],
                              extra_headers=SESSION)
        # "Answer 1." was stored; the client never got it and its SDK retries.
        resend = [*(system if system_each_turn else []), {"role": "user", "content": "Lunch?"}]
        retried = await chat.with_raw_response.create(model=MODEL, messages=resend,
                                                      extra_headers=RETRY)
        assert retried.parse().choices[0].message.content == "Answer 2."
        await chat.create(model=MODEL, messages=[{"role": "user", "content": "Where?"}],
                          extra_headers=SESSION)
    earlier = _texts({"messages": history})
    assert _texts(model.requests[1]) == [*earlier, "Lunch?"]
    # The session goes on from the answer the client got, the question once.
    assert _texts(model.requests[2]) == [*earlier, "Lunch?", "Answer 2.", "Where?"]
    assert retried.headers["x-vm-session"] == "retried-chat"


async def test_a_memory_turn_retried_sees_its_question_once() -> None:
    model = _numbered()
    history = conversation(40)
    settings = vm_settings(activate_above=0, pin_last_turns=2, recall_share=1.0)
    async with serve(model, settings) as proxy:
        chat = proxy.client.chat.completions
        with _undelivered(proxy):
            await chat.create(model=MODEL, messages=[*history,
                                                     {"role": "user", "content": "Lunch?"}],
                              extra_headers=SESSION)
        await chat.create(model=MODEL, messages=[{"role": "user", "content": "Lunch?"}],
                          extra_headers=RETRY)
        await chat.create(model=MODEL, messages=[{"role": "user", "content": "Where?"}],
                          extra_headers=SESSION)
    retried, after = _texts(model.requests[1]), _texts(model.requests[2])
    assert retried.count("Lunch?") == 1 and "Answer 1." not in retried
    assert after[-3:] == ["Lunch?", "Answer 2.", "Where?"] and "Answer 1." not in after


async def test_the_same_question_without_a_retry_is_a_new_turn() -> None:
    model = _numbered()
    history = conversation(3)
    async with serve(model, vm_settings()) as proxy:
        chat = proxy.client.chat.completions
        await chat.create(model=MODEL, messages=[*history, {"role": "user", "content": "Hi?"}],
                          extra_headers=SESSION)
        await chat.create(model=MODEL, messages=[{"role": "user", "content": "Hi?"}],
                          extra_headers=SESSION)
    assert _texts(model.requests[1]) == [*_texts({"messages": history}), "Hi?", "Answer 1.", "Hi?"]


async def test_a_retry_after_another_turn_is_a_new_turn() -> None:
    """A retry of a turn whose first try never stored anything (the conversation ends with
    another question's answer) is stored as a new turn."""
    model = _numbered()
    async with serve(model, vm_settings()) as proxy:
        chat = proxy.client.chat.completions
        await chat.create(model=MODEL, messages=[{"role": "user", "content": "One?"}],
                          extra_headers=SESSION)
        await chat.create(model=MODEL, messages=[{"role": "user", "content": "Two?"}],
                          extra_headers=RETRY)
    assert _texts(model.requests[1]) == ["One?", "Answer 1.", "Two?"]


async def test_a_retry_after_a_restart_is_of_the_turn_stored_before_it(tmp_path: Any) -> None:
    """The proxy was killed after storing the answer: the process the retry reaches never
    sent it."""
    model = _numbered()
    url = store_url("sqlite", tmp_path)
    async with serve(model, vm_settings(), await open_store(url)) as proxy:
        await proxy.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Lunch?"}], extra_headers=SESSION)
    async with serve(model, vm_settings(), await open_store(url)) as proxy:
        await proxy.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Lunch?"}], extra_headers=RETRY)
    assert _texts(model.requests[1]) == ["Lunch?"]


async def test_a_retry_of_a_question_asked_again_is_a_new_turn() -> None:
    """The answer reached the client; the client asked the same again, that request was
    lost before the proxy read it (a reset connection, a load balancer's 502), and its SDK
    retried it: a new turn, the answer before kept (a reviewer's case)."""
    model = _numbered()
    async with serve(model, vm_settings()) as proxy:
        chat = proxy.client.chat.completions
        for text, headers in (("Tell me a story.", SESSION), ("Continue.", SESSION),
                              ("Continue.", RETRY)):
            await chat.create(model=MODEL, messages=[{"role": "user", "content": text}],
                              extra_headers=headers)
    assert _texts(model.requests[2]) == ["Tell me a story.", "Answer 1.", "Continue.",
                                         "Answer 2.", "Continue."]
