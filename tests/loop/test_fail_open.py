"""fail-open when the store fails, and the VM counters of every kind of turn."""

from __future__ import annotations

from typing import Any

import pytest

import proxy.loop.resolver
from proxy.store.base import StoreError
from proxy.store.memory import MemoryStore
from tests.loop.harness import MODEL, parse_sse, serve, vm_settings
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import ScriptedModel, agent


async def _unreachable(*args: Any, **kwargs: Any) -> Any:
    raise StoreError("postgres store failed: connection refused")


def _messages() -> list[dict[str, Any]]:
    return [*conversation(80), {"role": "user", "content": QUESTION}]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_store_outage_answers_a_full_request_as_a_pass_through(
    monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    monkeypatch.setattr(MemoryStore, "append", _unreachable)
    model = ScriptedModel(agent(LOCKER))
    body = {"model": MODEL, "messages": _messages(), "stream": stream}
    async with serve(model) as running:
        response = await running.raw_chat(body)
        metrics = (await running.http.get("/metrics")).text
    assert response.status_code == 200
    assert model.requests == [body]  # the whole history, untouched
    if not stream:
        assert LOCKER_CODE in response.json()["choices"][0]["message"]["content"]
    assert "vm_fail_open_total 1" in metrics


async def test_a_store_outage_under_a_session_is_a_retryable_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under X-VM-Session the request may hold only the new messages: forwarding those
    alone would answer without the conversation, silently."""
    model = ScriptedModel(agent(LOCKER))
    async with serve(model) as running:
        monkeypatch.setattr(MemoryStore, "append", _unreachable)
        response = await running.raw_chat(
            {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]},
            headers={"X-VM-Session": "my-chat"},
        )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "memory_unavailable" and error["type"] == "server_error"
    assert model.requests == []


STORE_DOWN = {
    "message": "postgres store failed: connection refused",
    "type": "server_error",
    "param": None,
    "code": None,
}


async def test_without_fail_open_a_store_outage_is_a_503_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(MemoryStore, "append", _unreachable)
    model = ScriptedModel(agent(LOCKER))
    async with serve(model, vm_settings(fail_open=False)) as running:
        response = await running.raw_chat({"model": MODEL, "messages": _messages()})
    assert response.status_code == 503
    assert response.json() == {"error": STORE_DOWN}
    assert model.requests == []


async def test_a_store_outage_mid_stream_is_an_error_event_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stream has started: no pass-through is possible any more, and the error event
    says what failed (the store), not that the proxy did."""
    monkeypatch.setattr(proxy.loop.resolver.FaultResolver, "resolve", _unreachable)
    model = ScriptedModel(agent(LOCKER))
    body = {"model": MODEL, "messages": _messages(), "stream": True}
    async with serve(model) as running:
        response = await running.raw_chat(body)
    assert response.status_code == 200
    data = [event.json for event in parse_sse(response.text) if event.data is not None]
    assert data[-1] == {"error": STORE_DOWN}
    assert model.actions == ["search"]


def _counter(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_vm_counters_count_streamed_and_plain_turns(stream: bool) -> None:
    model = ScriptedModel(agent(LOCKER))
    async with serve(model) as running:
        response = await running.raw_chat(
            {"model": MODEL, "messages": _messages(), "stream": stream}
        )
        assert response.status_code == 200
        metrics = (await running.http.get("/metrics")).text
    assert model.actions == ["search", "fault", "answer"]
    assert _counter(metrics, "vm_turns_total") == 1
    assert _counter(metrics, "vm_faults_total") == 1
    sent = _counter(metrics, "vm_prompt_tokens_sent_total")
    assert sent > 0
    assert _counter(metrics, "vm_prompt_tokens_full_total") > sent


async def test_a_store_outage_answers_a_whole_responses_request_as_a_pass_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.loop.scripted_responses import ResponsesModel
    from tests.loop.test_responses import as_responses

    monkeypatch.setattr(MemoryStore, "append", _unreachable)
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(conversation(80))
    body = {"model": MODEL, "instructions": instructions,
            "input": [*items, {"role": "user", "content": QUESTION}]}
    async with serve(model, path="/responses") as running:
        response = await running.http.post(
            "/v1/responses", json=body, headers={"authorization": "Bearer sk-test"})
        metrics = (await running.http.get("/metrics")).text
    assert response.status_code == 200
    assert model.requests == [body]  # the whole input, untouched
    assert "vm_fail_open_total 1" in metrics


async def test_a_store_outage_under_a_responses_chain_is_a_retryable_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request chained by previous_response_id holds only its new items."""
    from tests.loop.scripted_responses import ResponsesModel

    model = ResponsesModel(agent(LOCKER))
    async with serve(model, path="/responses") as running:
        first = await running.client.responses.create(model=MODEL, input="Hello there.")
        asked = len(model.requests)
        monkeypatch.setattr(MemoryStore, "append", _unreachable)
        response = await running.http.post(
            "/v1/responses", headers={"authorization": "Bearer sk-test"},
            json={"model": MODEL, "input": QUESTION, "previous_response_id": first.id})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "memory_unavailable"
    assert len(model.requests) == asked  # nothing forwarded without the conversation
