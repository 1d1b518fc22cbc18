"""Failures: the VM path breaking (fail-open: a plain pass-through) and the upstream refusing
or breaking (an OpenAI-shaped error with the right status, or an error event)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

import proxy.loop.prepare
import proxy.loop.resolver
import proxy.loop.storing
from tests.loop.harness import MODEL, has_vm_tools, serve
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import Call, Calls, Fail, ScriptedModel, agent

ANSWER = f"Your locker code is {LOCKER_CODE}."


class Broken(RuntimeError):
    pass


def _raise(*args: Any, **kwargs: Any) -> Any:
    raise Broken("injected failure in the VM path")


async def _raise_async(*args: Any, **kwargs: Any) -> Any:
    raise Broken("injected failure in the VM path")


def _messages() -> list[dict[str, Any]]:
    return [*conversation(80), {"role": "user", "content": QUESTION}]


# --- fail-open ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("where", ["packer", "ingest"])
async def test_a_failing_vm_path_answers_as_a_pass_through(
    monkeypatch: pytest.MonkeyPatch, where: str, stream: bool
) -> None:
    if where == "packer":
        monkeypatch.setattr(proxy.loop.prepare, "pack_request", _raise)
    else:
        monkeypatch.setattr(proxy.loop.storing, "ingest_messages", _raise)
    model = ScriptedModel(agent(LOCKER))
    body = {"model": MODEL, "messages": _messages(), "stream": stream}
    async with serve(model) as running:
        response = await running.raw_chat(body)
    assert response.status_code == 200
    assert model.requests == [body]  # the client's own request, untouched
    if stream:
        assert response.text.rstrip().endswith("data: [DONE]")
    else:
        # The whole history went upstream, so the model could read the fact itself.
        assert response.json()["choices"][0]["message"]["content"] == ANSWER


async def test_a_failure_inside_the_loop_falls_back_to_a_pass_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(proxy.loop.resolver.FaultResolver, "resolve", _raise_async)
    model = ScriptedModel(agent(LOCKER))
    messages = _messages()
    async with serve(model) as running:
        completion = await running.client.chat.completions.create(
            model=MODEL, messages=messages
        )
    assert completion.choices[0].message.content == ANSWER
    assert model.actions == ["search", "answer"]
    assert has_vm_tools(model.requests[0])
    assert model.requests[-1]["messages"] == messages and "tools" not in model.requests[-1]


async def test_a_failure_inside_a_streaming_loop_ends_the_stream_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once a stream has started there is no pass-through to fall back to: the client gets
    an error event it can raise on, never a broken connection or a hang."""
    monkeypatch.setattr(proxy.loop.resolver.FaultResolver, "resolve", _raise_async)
    model = ScriptedModel(agent(LOCKER))
    async with serve(model) as running:
        stream = await running.client.chat.completions.create(
            model=MODEL, messages=_messages(), stream=True
        )
        with pytest.raises(openai.APIError) as raised:
            [chunk async for chunk in stream]
    assert raised.value.body == {
        "message": "The proxy failed while answering; the request may be retried.",
        "type": "server_error",
        "param": None,
        "code": "vm_stream_failed",
    }
    assert model.actions == ["search"]


# --- upstream errors ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("status", "error_class"),
    [(400, openai.BadRequestError), (401, openai.AuthenticationError),
     (404, openai.NotFoundError), (429, openai.RateLimitError)],
)
async def test_upstream_refusal_on_the_first_call(
    status: int, error_class: type[openai.APIStatusError], stream: bool
) -> None:
    model = ScriptedModel(agent(LOCKER))
    model.queue(Fail(status, "scripted refusal", code="scripted_code"))
    async with serve(model) as running:
        with pytest.raises(error_class) as raised:
            response = await running.client.chat.completions.create(
                model=MODEL, messages=_messages(), stream=stream
            )
            if stream:
                [chunk async for chunk in response]  # type: ignore[union-attr]
    error = raised.value
    assert error.status_code == status
    assert isinstance(error.body, dict)
    assert {"message", "type", "param", "code"} <= set(error.body)
    assert error.body["message"] == "scripted refusal"
    assert error.body["code"] == "scripted_code"
    assert len(model.requests) == 1 and has_vm_tools(model.requests[0])


async def test_upstream_500_mid_loop_non_streaming() -> None:
    model = ScriptedModel(agent(LOCKER))
    model.queue(Calls([Call("search_pages", {"query": QUESTION})]),
                Fail(500, "the upstream fell over", error_type="server_error"))
    async with serve(model) as running:
        response = await running.raw_chat({"model": MODEL, "messages": _messages()})
    assert response.status_code >= 500
    error = response.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert len(model.requests) == 2


async def test_upstream_500_mid_loop_streaming() -> None:
    model = ScriptedModel(agent(LOCKER))
    model.queue(Calls([Call("search_pages", {"query": QUESTION})]),
                Fail(500, "the upstream fell over", error_type="server_error"))
    async with serve(model) as running:
        stream = await running.client.chat.completions.create(
            model=MODEL, messages=_messages(), stream=True
        )
        with pytest.raises(openai.APIError) as raised:
            [chunk async for chunk in stream]
    assert "fell over" in raised.value.message
    assert len(model.requests) == 2
