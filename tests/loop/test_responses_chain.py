"""A `previous_response_id` chain as OpenAI runs it: each response's `instructions` hold for
that response only (the next one's replace them, none carried over), a client's own system
items in its input stay with the conversation, and every Response echoes the request's
`previous_response_id` and `instructions`, short (relayed) turns as memory turns."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest

from tests.loop.harness import API_KEY, MODEL, parse_sse, serve, vm_settings
from tests.loop.history import LOCKER, conversation
from tests.loop.scripted import ScriptedModel, agent
from tests.loop.scripted_responses import ResponsesModel
from tests.loop.test_responses import as_responses

OWN_NOTE = "Client note: the user is on a boat."
HEADERS = {"authorization": f"Bearer {API_KEY}"}


def _history(long: bool) -> list[dict[str, Any]]:
    """The first request's input: the client's own developer item, then a history long
    enough for memory (or none), then a question."""
    items = as_responses(conversation(120))[1] if long else []
    return [{"role": "developer", "content": OWN_NOTE}, *items,
            {"role": "user", "content": "hello"}]


def _front(body: dict[str, Any]) -> str:
    """What an upstream request puts before the conversation: its `instructions`, else
    its first input item's text when that is a system or developer message."""
    if isinstance(body.get("instructions"), str):
        return str(body["instructions"])
    first = body["input"][0]
    return str(first.get("content")) if first.get("role") in ("system", "developer") else ""


@pytest.mark.parametrize("long", [False, True], ids=["relayed", "memory-turn"])
async def test_a_chained_turn_sends_its_own_instructions_only(long: bool) -> None:
    model = ResponsesModel(agent(LOCKER))
    async with serve(model, path="/responses") as proxy:
        client = proxy.client
        response = await client.responses.create(
            model=MODEL, instructions="You are A.", input=_history(long))
        for n in range(3):
            response = await client.responses.create(
                model=MODEL, instructions=f"You are B{n}.", input=f"turn {n}",
                previous_response_id=response.id)
            sent = json.dumps(model.requests[-1])
            assert "You are A." not in sent
            assert [f"You are B{k}." in sent for k in range(n + 1)] == [
                k == n for k in range(n + 1)]
            assert sent.count(f"You are B{n}.") == 1
            assert _front(model.requests[-1]).startswith(f"You are B{n}.")
            # The client's own item is part of the conversation: it stays, once.
            assert sent.count(OWN_NOTE) == 1
            assert f"turn {n}" in sent
            memory = {t.get("name") for t in model.requests[-1].get("tools") or ()}
            assert ("search_pages" in memory) is long  # memory turns, or relayed ones
        # No instructions: none at all (the earlier ones are not carried over).
        await client.responses.create(model=MODEL, input="and now?",
                                      previous_response_id=response.id)
    last = json.dumps(model.requests[-1])
    assert "You are" not in last and last.count(OWN_NOTE) == 1
    assert all("previous_response_id" not in body for body in model.requests)
    assert model.actions.count("fail") == 0


async def test_a_session_client_resending_its_instructions_each_turn() -> None:
    # X-VM-Session: the instructions sent again with each turn's new items are the turn's
    # own; the conversation holds each turn's items once.
    model = ResponsesModel(agent(LOCKER))
    headers = {"x-vm-session": "agent-1"}
    async with serve(model, path="/responses") as proxy:
        for n, instructions in enumerate(["You are A.", "You are A.", "You are C."]):
            await proxy.client.responses.create(
                model=MODEL, instructions=instructions, input=f"turn {n}",
                extra_headers=headers)
        conv_id = await proxy.store.resolve_session(proxy.tenant, "agent-1")
        assert conv_id is not None
        stored = await proxy.store.get_conversation(proxy.tenant, conv_id)
    last = model.requests[-1]
    sent = json.dumps(last)
    assert "You are A." not in sent and sent.count("You are C.") == 1
    assert _front(last) == "You are C."
    assert [sent.count(f"turn {n}") for n in range(3)] == [1, 1, 1]
    # The first turn's instructions, then each turn's question and answer.
    assert stored is not None and stored.length == 1 + 3 * 2


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
async def test_a_short_chained_turn_echoes_the_request(gzipped: bool) -> None:
    # Relayed below the threshold, rebuilt without the id the upstream never issued: the
    # Response the client gets still echoes its previous_response_id and instructions,
    # and is otherwise the upstream's (its id, output, usage, sequence numbers).
    model = ResponsesModel(agent(LOCKER))

    async def upstream(request: httpx.Request) -> httpx.Response:
        reply = await model(request)
        if not gzipped or reply.headers["content-type"] != "application/json":
            return reply
        return httpx.Response(reply.status_code, content=gzip.compress(reply.content),
                              headers={"content-type": "application/json",
                                       "content-encoding": "gzip"})

    async with serve(upstream, path="/responses") as proxy:
        client = proxy.client
        first = await client.responses.create(model=MODEL, instructions="Be brief.",
                                              input="hi")
        raw = await proxy.http.post("/v1/responses", headers=HEADERS, json={
            "model": MODEL, "instructions": "Be brief.", "input": "again",
            "previous_response_id": first.id})
        second = raw.json()
        streamed = await proxy.http.post("/v1/responses", headers=HEADERS, json={
            "model": MODEL, "instructions": "Be terse.", "input": "more", "stream": True,
            "previous_response_id": second["id"]})
        async with client.responses.stream(
            model=MODEL, input="last", previous_response_id="resp_scripted003",
        ) as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_response()
    assert first.id == "resp_scripted001" and first.previous_response_id is None
    assert second["id"] == "resp_scripted002"
    assert second["previous_response_id"] == first.id
    assert second["instructions"] == "Be brief."
    assert second["output"][0]["content"][0]["text"] == "Noted, thanks (1 words)."
    assert second["usage"] == model.usages()[1]
    events = [e.json for e in parse_sse(streamed.text) if e.data is not None]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    shown = [e["response"] for e in events if "response" in e]
    assert [r["id"] for r in shown] == ["resp_scripted003"] * 3
    assert {r["previous_response_id"] for r in shown} == {second["id"]}
    assert {r["instructions"] for r in shown} == {"Be terse."}
    assert final.id == "resp_scripted004"
    assert final.previous_response_id == "resp_scripted003" and final.instructions is None
    assert all("previous_response_id" not in body for body in model.requests)


async def test_a_chat_upstream_gets_the_turn_s_own_instructions() -> None:
    # upstream.responses = "chat": the same history, as chat messages, and the mark that
    # says which messages were instructions stays in the proxy.
    model = ScriptedModel(agent(LOCKER))
    async with serve(model, vm_settings(responses="chat")) as proxy:
        first = await proxy.client.responses.create(
            model=MODEL, instructions="You are A.", input="Hello there!")
        await proxy.client.responses.create(
            model=MODEL, instructions="You are B.", input="How are you?",
            previous_response_id=first.id)
    assert model.requests[1]["messages"] == [
        {"role": "system", "content": "You are B."},
        {"role": "user", "content": "Hello there!"},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "How are you?"}]
