"""The turn replay rebuilds, for every memory turn of a long scripted conversation, the
first upstream request of that turn byte for byte: from the turn's record in the mutation
log, the request's static part and the stored pages.

The conversation mixes what changes a prompt: the recalled block, searches and faults (a
fact asked for again and again), the window restarting (compactions), streamed turns, a
client's own tool call, a regenerate (a fork), a full resend after session appends.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from proxy.admin import reads
from proxy.admin.replay import replay
from proxy.store import open_store
from tests.loop.harness import serve, vm_message, vm_settings
from tests.loop.history import FACT_MESSAGE, LOCKER, QUESTION, SYSTEM, filler_turn
from tests.loop.scripted import Answer, Call, Calls, ScriptedModel, agent

TURNS = 300
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


class Recording(ScriptedModel):
    """The scripted model, keeping the bytes of every request as they arrived."""

    def __init__(self) -> None:
        super().__init__(agent(LOCKER))
        self.raw: list[bytes] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.raw.append(request.content)
        return await super().__call__(request)


@pytest.fixture(params=["memory", "sqlite"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/vm.db"


async def test_every_turn_of_300_is_rebuilt_as_sent(store_url: str) -> None:
    model = Recording()
    settings = vm_settings(context_budget=2500, activate_above=900, recall_share=1.0,
                           segment_turns=6)
    store = await open_store(store_url, cache_pages=500)
    rng = random.Random(11)
    firsts: dict[int, int] = {}  # the proxy's turn number -> index of its first request
    session = {"x-vm-session": "replay-300"}
    async with serve(model, settings, store) as proxy:
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
        for turn in range(TURNS):
            user, _ = filler_turn(rng, turn)
            if turn == 4:
                user = FACT_MESSAGE
            elif turn % 9 == 8:
                user = QUESTION
            new: list[dict[str, Any]] = [{"role": "user", "content": user}]
            body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": new}
            if turn % 50 == 20:
                # A client's own tool: the turn takes two requests.
                body["tools"] = [WEATHER]
                model.queue(Calls([Call("get_weather", {"city": "Porto"})]))
            if turn % 25 == 12:
                # The model searches, then pages a message in (after what recall showed).
                model.queue(Calls([Call("search_pages", {"query": "locker gym code"})]),
                            Calls([Call("page_fault", {"page_id": "msg_9",
                                                       "target_level": 1})]))
            if turn % 7 == 3 and "tools" not in body:
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
            mark = model.mark()
            response = await proxy.raw_chat(body, session)
            assert response.status_code == 200, response.text
            answer = _answer(response, stream=bool(body.get("stream")))
            firsts[turn + 1] = mark
            messages += [*new, answer]
            if "tools" in body:
                model.queue(Answer("Sunny in Porto."))
                assert "tool_calls" in answer, (response.text, model.steps[-1])
                result = {"role": "tool", "tool_call_id": answer["tool_calls"][0]["id"],
                          "content": '{"sky": "sunny", "c": 24}'}
                follow = await proxy.raw_chat({**body, "messages": [result]}, session)
                assert follow.status_code == 200, follow.text
                messages += [result, follow.json()["choices"][0]["message"]]
        # A full resend of the whole history, then a regenerate of its last answer (a fork).
        mark = model.mark()
        resent = await proxy.raw_chat({"model": "gpt-4o-mini", "messages": [
            *messages, {"role": "user", "content": QUESTION}]})
        assert resent.status_code == 200
        firsts[TURNS + 1] = mark
        mark = model.mark()
        again = await proxy.raw_chat({"model": "gpt-4o-mini", "messages": [
            *messages, {"role": "user", "content": QUESTION}]})
        assert again.status_code == 200
        regenerated = again.headers["x-vm-session"]

        tenant = proxy.tenant
        conv_id = (await store.resolve_session(tenant, "replay-300")) or ""
        found = await reads.find(store, conv_id)
        timeline = await reads.timeline(store, found, first=0, limit=500)
        memory_turns = {(e["turn"], e["request"]) for e in timeline["data"]}
        checked = faulted = searched = streamed = 0
        for turn, first in sorted(firsts.items()):
            sent = model.raw[first]
            if turn == TURNS + 1:
                found = await reads.find(store, resent.headers["x-vm-session"])
            if vm_message(orjson.loads(sent)) is None:
                assert (turn, 0) not in memory_turns  # went upstream whole: no record
                continue
            got = await replay(store, found, turn)
            assert got["check"]["same"] is True, (turn, got["check"])
            assert got["check"]["digest"] == hashlib.sha256(sent).hexdigest()
            assert orjson.dumps(got["upstream_request"]) == sent, turn
            checked += 1
            faulted += bool(got["faults"])
            searched += bool(got["searches"])
            streamed += got["upstream_request"].get("stream") is True
            if got["requests"] == 2:
                # The client's tool call made a second request of the same turn.
                second = await replay(store, found, turn, request=1)
                assert second["check"]["same"] is True
                assert orjson.dumps(second["upstream_request"]) == model.raw[first + 1]
        assert checked > 250 and faulted and searched and streamed
        # The regenerate forked: its turn is on its own branch, rebuilt as it was sent.
        fork = await reads.find(store, regenerated)
        got = await replay(store, fork, -1)
        assert got["turn"] == TURNS + 1
        assert orjson.dumps(got["upstream_request"]) == model.raw[mark]


def _answer(response: httpx.Response, *, stream: bool) -> dict[str, Any]:
    if not stream:
        return dict(response.json()["choices"][0]["message"])
    text = ""
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            choices = orjson.loads(line[6:])["choices"]
            if choices:
                text += choices[0]["delta"].get("content") or ""
    return {"role": "assistant", "content": text}
