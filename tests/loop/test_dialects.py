"""Upstream dialects inside the loop (SSE_FORMAT.md): whatever shape the upstream's tool
calls, finish and usage take, the VM calls are resolved and the answer reaches the client
as one clean OpenAI stream."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.loop.harness import MODEL, serve, sum_usage
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import (
    Call,
    Calls,
    Dialect,
    ScriptedModel,
    StreamError,
    agent,
)

DIALECTS = [
    Dialect("openai"),
    Dialect("vllm-null-arguments", args_null_header=True),
    Dialect("mistral-whole-call", whole_call=True, usage_at="finish"),
    Dialect("gemini-empty-id", empty_id=True),
    Dialect("anthropic-index-1", index_base=1, preface="Looking. "),
    Dialect("finish-stop", tool_finish="stop"),
    Dialect("finish-eos", tool_finish="eos"),
    Dialect("finish-absent", tool_finish=None),
    Dialect("usage-on-finish", usage_at="finish"),
    Dialect("groq-x-groq-usage", usage_at="x_groq"),
    Dialect("azure-empty-first-chunk", azure_first=True),
    Dialect("everything-odd", args_null_header=True, empty_id=True, index_base=1,
            tool_finish=None, usage_at="x_groq", azure_first=True),
]


def _messages() -> list[dict[str, Any]]:
    return [*conversation(80), {"role": "user", "content": QUESTION}]


@pytest.mark.parametrize("dialect", DIALECTS, ids=[d.name for d in DIALECTS])
async def test_dialect_streaming(dialect: Dialect) -> None:
    model = ScriptedModel(agent(LOCKER), dialect=dialect)
    async with serve(model) as proxy:
        stream = await proxy.client.chat.completions.create(
            model=MODEL, messages=_messages(), stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert model.actions == ["search", "fault", "answer"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith(f"Your locker code is {LOCKER_CODE}.")
    assert text == dialect.preface * 2 + f"Your locker code is {LOCKER_CODE}."
    assert all(c.choices[0].delta.tool_calls is None for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks
            if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert len({c.id for c in chunks}) == 1 and chunks[0].id
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
    assert chunks[-1].usage.model_dump(include={
        "prompt_tokens", "completion_tokens", "total_tokens"}) == sum_usage(model.usages())


NON_STREAM = [Dialect("gemini-empty-id", empty_id=True),
              Dialect("tgi-finish-stop", tool_finish="stop")]


@pytest.mark.parametrize("dialect", NON_STREAM, ids=[d.name for d in NON_STREAM])
async def test_dialect_non_streaming(dialect: Dialect) -> None:
    model = ScriptedModel(agent(LOCKER), dialect=dialect)
    async with serve(model) as proxy:
        completion = await proxy.client.chat.completions.create(
            model=MODEL, messages=_messages()
        )
    assert model.actions == ["search", "fault", "answer"]
    assert completion.choices[0].message.content == f"Your locker code is {LOCKER_CODE}."
    assert completion.choices[0].message.tool_calls is None
    # Every tool message the upstream got answers a call id it made (ids filled in if "").
    for body in model.requests[1:]:
        calls = {c["id"] for m in body["messages"] for c in m.get("tool_calls") or ()}
        answered = [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]
        assert answered and all(i and i in calls for i in answered)


@pytest.mark.parametrize("iteration", [0, 1], ids=["first-iteration", "after-a-search"])
async def test_error_event_mid_stream(iteration: int) -> None:
    model = ScriptedModel(agent(LOCKER))
    if iteration:
        model.queue(Calls([Call("search_pages", {"query": QUESTION})]))
    model.queue(StreamError("Let me th", message="Upstream broke mid-stream."))
    async with serve(model) as proxy:
        stream = await proxy.client.chat.completions.create(
            model=MODEL, messages=_messages(), stream=True
        )
        seen: list[Any] = []
        with pytest.raises(openai.APIError) as raised:
            async for chunk in stream:
                seen.append(chunk)
    assert "Upstream broke mid-stream." in raised.value.message
    assert len(model.requests) == iteration + 1
    text = "".join(c.choices[0].delta.content or "" for c in seen if c.choices)
    assert text == "Let me th"
    assert all(not c.choices or c.choices[0].finish_reason is None for c in seen)
