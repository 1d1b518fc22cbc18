"""The store failing when a turn's answer is written (a PostgreSQL restart, in a reviewer's
run): under `X-VM-Session` the client may never send the answer again, so it must not get
it as if it were kept: a 503 `memory_unavailable`, or a stream that ends with an error
event instead of its end, and it retries. (It used to get the whole answer, 200 or
`[DONE]`, while only its question was stored; its next turn then took the question for a
failed one and left it out of the history.) A whole-history client, which resends its
answer, still gets it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from proxy.store import open_store
from proxy.store.base import PageStore, StoreError
from proxy.vm.pages import Page
from tests.loop.harness import MODEL, serve, vm_settings
from tests.loop.history import LOCKER, QUESTION, conversation
from tests.loop.scripted import ScriptedModel, agent


class FailingAnswers:
    """A store whose appends of an assistant's answer fail while `failing` is set."""

    def __init__(self, inner: PageStore) -> None:
        self.inner = inner
        self.failing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, tenant: str, conv_id: str, pages: Sequence[Page],
                     **kwargs: Any) -> Any:
        if self.failing and any(p.role == "assistant" and p.message is not None for p in pages):
            raise StoreError("the database system is shutting down")
        return await self.inner.append(tenant, conv_id, pages, **kwargs)


def _events(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("long", [False, True], ids=["relayed", "memory turn"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_sessions_answer_that_cannot_be_stored_is_not_given(
    long: bool, stream: bool
) -> None:
    store = FailingAnswers(await open_store("memory://"))
    session = {"x-vm-session": "kept"}
    first = [*conversation(120)] if long else [{"role": "user", "content": "Hello!"}]
    async with serve(ScriptedModel(agent(LOCKER)), vm_settings(),
                     store=store) as proxy:  # type: ignore[arg-type]
        ok = await proxy.raw_chat({"model": MODEL, "messages": first}, session)
        assert ok.status_code == 200
        store.failing = True
        failed = await proxy.raw_chat({"model": MODEL, "stream": stream, "messages": [
            {"role": "user", "content": QUESTION}]}, session)
        if not stream:
            assert failed.status_code == 503
            assert failed.json()["error"]["code"] == "memory_unavailable"
        else:
            events = _events(failed.text)
            assert events and "[DONE]" not in events
            assert json.loads(events[-1])["error"]["code"] == "memory_unavailable"
            assert not any((json.loads(e).get("choices") or [{}])[0].get("finish_reason")
                           for e in events[:-1])
        store.failing = False
        retried = await proxy.raw_chat({"model": MODEL, "messages": [
            {"role": "user", "content": QUESTION}]}, session)
        assert retried.status_code == 200
        (conv,) = await store.list_conversations()
        path = await store.path(proxy.tenant, conv.conv_id)
        pages = await store.pages_in_range(path, 0, conv.length)
        roles = [p.role for p in pages if p.message is not None]
    assert roles[-2:] == ["user", "assistant"]
    assert not any(a == b == "user" for a, b in zip(roles, roles[1:], strict=False))
    asked = [p.message["content"] for p in pages
             if p.message is not None and p.role == "user"]
    assert asked.count(QUESTION) == 1


async def test_a_whole_history_client_still_gets_its_answer() -> None:
    store = FailingAnswers(await open_store("memory://"))
    async with serve(ScriptedModel(agent(LOCKER)), vm_settings(),
                     store=store) as proxy:  # type: ignore[arg-type]
        store.failing = True
        for messages in ([{"role": "user", "content": "Hello!"}],
                         [*conversation(120), {"role": "user", "content": QUESTION}]):
            answered = await proxy.raw_chat({"model": MODEL, "messages": messages})
            assert answered.status_code == 200
