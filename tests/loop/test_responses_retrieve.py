"""`GET /v1/responses/{id}` through the proxy, with the real `openai` SDK: a memory turn's
id, which the proxy made and no upstream knows, is answered from the store (the same id,
output items and creation time; usage unknown); an id the upstream knows comes back as the
upstream has it; another tenant's id, an unknown one, or one asked with memory off gets
the upstream's 404."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

import httpx
import openai
import pytest
import respx

from proxy.store import open_store
from tests.loop.harness import MODEL, fresh_store, serve, vm_settings
from tests.loop.history import LOCKER, QUESTION, conversation
from tests.loop.scripted import Call, Calls, ScriptedModel, agent
from tests.loop.scripted_responses import ResponsesModel
from tests.loop.test_responses import ANSWER, as_responses

GONE = {"error": {"message": "No response found.", "type": "invalid_request_error",
                  "param": None, "code": None}}
UPSTREAMS_OWN = {
    "id": "resp_upstreams_own", "object": "response", "created_at": 7, "status": "completed",
    "model": MODEL, "output": [], "usage": None,
}


def upstream_gets(asked: list[str]) -> Any:
    """An upstream that knows `resp_upstreams_own` and answers 404 for any other id."""

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path.endswith("/resp_upstreams_own"):
            return httpx.Response(200, json=UPSTREAMS_OWN)
        return httpx.Response(404, json=GONE)

    def routes(router: respx.Router, base_url: str) -> None:
        router.get(url__startswith=f"{base_url}/responses/").mock(side_effect=answer)

    return routes


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"])
@pytest.mark.parametrize("responses", ["native", "chat"])
async def test_a_memory_turns_response_is_retrieved(
    backend: str, responses: str, tmp_path: FsPath
) -> None:
    async with fresh_store(backend, tmp_path) as url:
        await _retrieved(url, responses)


async def _retrieved(store_url: str, responses: str) -> None:
    """A whole-history memory turn, then one chained to it: each id the proxy made reads
    back as the client received it, in a process started anew on the same store too (but
    `memory://`)."""
    model: Any = (ResponsesModel(agent(LOCKER)) if responses == "native"
                  else ScriptedModel(agent(LOCKER)))
    path = "/responses" if responses == "native" else "/chat/completions"
    instructions, items = as_responses(conversation(120))
    asked: list[str] = []
    settings = vm_settings(responses=responses)
    async with serve(model, settings, await open_store(store_url), path=path,
                     upstream_routes=upstream_gets(asked)) as proxy:
        first = await proxy.client.responses.create(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": QUESTION}])
        second = await proxy.client.responses.create(
            model=MODEL, previous_response_id=first.id, input="Thanks! " + QUESTION)
        assert first.output_text == second.output_text == ANSWER
        for made in (first, second):
            got = await proxy.client.responses.retrieve(made.id)
            assert got.id == made.id and got.status == "completed"
            assert got.output_text == ANSWER
            assert [i.model_dump() for i in got.output] == [i.model_dump() for i in made.output]
            assert got.created_at == pytest.approx(made.created_at, abs=2)
            assert got.usage is None
    if responses == "native":
        assert asked == [f"/v1/responses/{first.id}", f"/v1/responses/{second.id}"]
    else:
        assert asked == []  # a chat upstream has no Responses API to ask
    if store_url == "memory://":
        return  # nothing outlives the process
    async with serve(model, settings, await open_store(store_url), path=path,
                     upstream_routes=upstream_gets(asked)) as proxy:
        again = await proxy.client.responses.retrieve(second.id)
    assert again.output_text == ANSWER and again.id == second.id


async def test_a_client_call_reads_back_as_the_call() -> None:
    """An answer that ended in the client's function call, on a chat upstream: its items
    (the text and the call) read back with the ids and call id the client got."""
    weather = {"type": "function", "name": "get_weather", "description": "The weather.",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    model = ScriptedModel(agent(LOCKER))
    model.queue(Calls([Call("get_weather", {"city": "Porto"})], text="Checking."))
    instructions, items = as_responses(conversation(120))
    async with serve(model, vm_settings(responses="chat")) as proxy:
        made = await proxy.client.responses.create(
            model=MODEL, instructions=instructions, tools=[weather],
            input=[*items, {"role": "user", "content": "Weather in Porto?"}])
        got = await proxy.client.responses.retrieve(made.id)
    assert [i.type for i in made.output] == ["message", "function_call"]
    assert [i.model_dump() for i in got.output] == [i.model_dump() for i in made.output]


async def test_what_the_upstream_knows_comes_from_the_upstream() -> None:
    asked: list[str] = []
    async with serve(ResponsesModel(agent(LOCKER)), path="/responses",
                     upstream_routes=upstream_gets(asked)) as proxy:
        got = await proxy.client.responses.retrieve("resp_upstreams_own")
    assert got.id == "resp_upstreams_own" and got.created_at == 7
    assert asked == ["/v1/responses/resp_upstreams_own"]


@pytest.mark.parametrize("responses", ["native", "chat"])
async def test_unknown_foreign_and_memory_off_ids_are_the_upstreams_404(responses: str) -> None:
    model: Any = (ResponsesModel(agent(LOCKER)) if responses == "native"
                  else ScriptedModel(agent(LOCKER)))
    path = "/responses" if responses == "native" else "/chat/completions"
    instructions, items = as_responses(conversation(120))
    asked: list[str] = []
    async with serve(model, vm_settings(responses=responses), path=path,
                     upstream_routes=upstream_gets(asked)) as proxy:
        made = await proxy.client.responses.create(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": QUESTION}])
        other = openai.AsyncOpenAI(base_url="http://proxy/v1", api_key="sk-other",
                                   http_client=proxy.http, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            await other.responses.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            await proxy.client.responses.retrieve("resp_nobody_made")
        with pytest.raises(openai.NotFoundError):
            await proxy.client.responses.retrieve(made.id, extra_headers={"X-VM-Mode": "off"})
        streamed = await proxy.http.get(f"/v1/responses/{made.id}?stream=true",
                                        headers={"authorization": "Bearer sk-test"})
        assert streamed.status_code == 404  # a background response's events: upstream's
        kept = await proxy.client.responses.retrieve(made.id)
    assert kept.output_text == ANSWER
    assert asked == [f"/v1/responses/{made.id}", "/v1/responses/resp_nobody_made",
                     f"/v1/responses/{made.id}", f"/v1/responses/{made.id}",
                     *([f"/v1/responses/{made.id}"] if responses == "native" else [])]


async def test_head_is_a_get_and_an_anonymous_get_is_refused_when_credentials_are_required(
) -> None:
    model = ScriptedModel(agent(LOCKER))
    instructions, items = as_responses(conversation(120))
    asked: list[str] = []
    base = vm_settings(responses="chat")
    settings = base.model_copy(update={"tenant": base.tenant.model_copy(
        update={"require_credential": True})})

    def routes(router: respx.Router, base_url: str) -> None:
        upstream_gets(asked)(router, base_url)
        router.head(url__startswith=f"{base_url}/responses/").mock(
            side_effect=lambda request: (asked.append("HEAD"), httpx.Response(404))[1])

    async with serve(model, settings, upstream_routes=routes) as proxy:
        made = await proxy.client.responses.create(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": QUESTION}])
        head = await proxy.http.head(f"/v1/responses/{made.id}",
                                     headers={"authorization": "Bearer sk-test"})
        assert head.status_code == 200 and asked == []  # as a GET: from the store
        unknown = await proxy.http.head("/v1/responses/resp_nobody_made",
                                        headers={"authorization": "Bearer sk-test"})
        assert unknown.status_code == 404 and asked == ["HEAD"]
        anonymous = await proxy.http.get(f"/v1/responses/{made.id}")
        assert anonymous.status_code == 401
        kept = await proxy.client.responses.retrieve(made.id)
    assert kept.output_text == ANSWER
