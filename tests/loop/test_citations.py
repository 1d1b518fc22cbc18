"""Strict mode's `[ref: ...]` citations: stripped from what the client receives, also when
a citation is cut across stream chunks, unless `vm.show_citations` is on."""

from __future__ import annotations

from typing import Any

import pytest

from tests.loop.harness import MODEL, serve, vm_settings
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import Fact, ScriptedModel, agent, pieces

CITED = f"Your locker code is {LOCKER_CODE} [ref: msg_11]."
CLEAN = f"Your locker code is {LOCKER_CODE}."


def _cite(fact: Fact, found: str) -> str:
    return f"Your {fact.topic} is {found} [ref: msg_11]."


def _messages() -> list[dict[str, Any]]:
    return [*conversation(80), {"role": "user", "content": QUESTION}]


async def _answer(show: bool, stream: bool) -> str:
    model = ScriptedModel(agent(LOCKER, answer=_cite))
    async with serve(model, vm_settings(show_citations=show)) as proxy:
        if stream:
            chunks = [c async for c in await proxy.client.chat.completions.create(
                model=MODEL, messages=_messages(), stream=True)]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            completion = await proxy.client.chat.completions.create(
                model=MODEL, messages=_messages())
            text = completion.choices[0].message.content or ""
    assert model.actions == ["search", "fault", "answer"]
    return text


def test_the_scripted_stream_cuts_the_citation() -> None:
    """The premise of the streaming case: no single upstream piece holds the citation."""
    assert not any("[ref: msg_11]" in piece for piece in pieces(CITED, 4))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_citations_are_stripped(stream: bool) -> None:
    assert await _answer(show=False, stream=stream) == CLEAN


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_citations_are_kept_when_shown(stream: bool) -> None:
    assert await _answer(show=True, stream=stream) == CITED


async def test_relaxed_mode_leaves_text_alone() -> None:
    model = ScriptedModel(agent(LOCKER, answer=_cite))
    async with serve(model, vm_settings(mode="relaxed")) as proxy:
        completion = await proxy.client.chat.completions.create(
            model=MODEL, messages=_messages())
    assert completion.choices[0].message.content == CITED



@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_stripped_citations_are_recorded(stream: bool) -> None:
    """What the client no longer sees is kept: a `cite` event for the cited page in the
    conversation's mutation log."""
    model = ScriptedModel(agent(LOCKER, answer=_cite))
    async with serve(model) as proxy:
        raw = await proxy.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=_messages(), stream=stream
        )
        reply = raw.parse()
        if stream:
            async for _ in reply:
                pass
        conv_id = raw.headers["x-vm-session"]
        log = await proxy.store.mutations(proxy.tenant, conv_id)
    cited = [m.page_id for m in log if m.event == "cite"]
    assert cited == ["msg_11"]
