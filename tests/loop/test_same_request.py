"""The same short request again (proxy.loop.short_chat.SameTurn): a regenerate, an SDK's
retry, another client's identical call. Its answer is placed before the response goes out:
one that some conversation already ends with, after exactly this history, is stored no
more (it used to get a fork of its own each time, with a copy of the answer); another
answer goes on a fork of its own. Whatever the case, the conversation the response names
holds exactly the request's history and its answer."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from proxy.loop.handler import _answer_again
from proxy.loop.short_chat import SameTurn
from proxy.store import open_store
from proxy.store.base import PageStore
from tests.loop.harness import API_KEY, serve, vm_settings
from tests.loop.test_short_chat import VM_HEADERS, contents, kept_open, reply, user

QUESTION = [user("What is the capital of France?")]


def store_url(backend: str, tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/store.db" if backend == "sqlite" else "memory://"


async def held(store: PageStore, tenant: str, conv_id: str) -> list[str]:
    """The contents of the messages on `conv_id`'s path, in order."""
    conv = await store.get_conversation(tenant, conv_id)
    assert conv is not None
    path = await store.path(tenant, conv_id)
    pages = await store.pages_in_range(path, 0, conv.length)
    return [str(p.message["content"]) for p in pages if p.message is not None]


@pytest.fixture
def same_turns(monkeypatch: pytest.MonkeyPatch) -> list[SameTurn]:
    """The SameTurns the handler takes."""
    taken: list[SameTurn] = []

    async def spied(state: Any, request: Any, raw: bytes, again: SameTurn) -> Any:
        taken.append(again)
        return await _answer_again(state, request, raw, again)

    monkeypatch.setattr("proxy.loop.handler._answer_again", spied)
    return taken


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_the_same_request_with_the_same_answer_stores_nothing_more(
    backend: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, same_turns: list[SameTurn],
    decided: list[int],
) -> None:
    store = await kept_open(store_url(backend, tmp_path), monkeypatch)
    async with serve(reply, vm_settings(), store) as proxy:
        body = {"model": "gpt-4o", "messages": QUESTION}
        first = await proxy.raw_chat(body)
        answer = first.json()["choices"][0]["message"]["content"]
        named = first.headers["x-vm-session"]
        before = await contents(store, proxy.tenant)
        replies = [await proxy.raw_chat(body) for _ in range(5)]
        assert len(same_turns) == 5
        # The first request and the first repeat are decided; the others take that
        # decision by their bytes (proxy.loop.repeats).
        assert len(decided) == 2 and len(proxy.app.state.repeats) == 1
        assert {r.status_code for r in replies} == {200}
        # Each names the conversation its answer is on, the first request's, with the same
        # headers, and nothing more is stored.
        for response in replies:
            assert {k: response.headers[k] for k in VM_HEADERS} == {
                k: first.headers[k] for k in VM_HEADERS
            }
        assert await held(store, proxy.tenant, named) == [QUESTION[0]["content"], answer]
        assert await contents(store, proxy.tenant) == before
        # The same messages in other bytes: decided again, and the same.
        spaced = orjson.dumps(body, option=orjson.OPT_INDENT_2)
        response = await proxy.http.post(
            "/v1/chat/completions", content=spaced,
            headers={"authorization": f"Bearer {API_KEY}", "content-type": "application/json"},
        )
        assert response.status_code == 200 and len(decided) == 3
        assert response.headers["x-vm-session"] == named
        assert await contents(store, proxy.tenant) == before
        tenant = proxy.tenant
    # Read back from the file by a new process: the same.
    if backend == "sqlite":
        reopened = await open_store(store_url(backend, tmp_path))
        try:
            assert await contents(reopened, tenant) == before
        finally:
            await reopened.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_the_same_request_with_another_answer_goes_on_a_fork_of_its_own(
    backend: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, same_turns: list[SameTurn]
) -> None:
    answers = iter(["Paris.", "Paris.", "It is Paris.", "Paris, of course.", "It is Paris."])

    def varied(request: httpx.Request) -> httpx.Response:
        response = reply(request)
        body = response.json()
        body["choices"][0]["message"]["content"] = next(answers)
        return httpx.Response(200, json=body)

    store = await kept_open(store_url(backend, tmp_path), monkeypatch)
    async with serve(varied, vm_settings(), store) as proxy:
        body = {"model": "gpt-4o", "messages": QUESTION}
        names = []
        for _ in range(5):
            response = await proxy.raw_chat(body)
            assert response.status_code == 200
            conv_id = response.headers["x-vm-session"]
            names.append(conv_id)
            assert await held(store, proxy.tenant, conv_id) == [
                QUESTION[0]["content"], response.json()["choices"][0]["message"]["content"]
            ]
        assert len(same_turns) == 4
        # A new answer, a new branch; an answer given before, the one that holds it.
        assert names[1] == names[0]
        assert len({names[0], names[2], names[3]}) == 3
        assert names[4] == names[2]
        # Every branch holds its own answer once and shares the question.
        infos = await store.list_conversations(tenant=proxy.tenant, limit=100)
        assert len(infos) == 3


async def test_the_same_request_after_the_chat_went_on_names_a_branch_ending_there(
    same_turns: list[SameTurn],
) -> None:
    """The history and its answer are stored, but the conversation holding them went on:
    the response names a branch that ends with this answer, never the longer chat."""
    async with serve(reply, vm_settings()) as proxy:
        body = {"model": "gpt-4o", "messages": QUESTION}
        first = await proxy.raw_chat(body)
        answer = first.json()["choices"][0]["message"]
        longer = [*QUESTION, answer, user("And of Spain?")]
        went_on = await proxy.raw_chat({"model": "gpt-4o", "messages": longer})
        chat = went_on.headers["x-vm-session"]
        again = await proxy.raw_chat(body)
        assert again.status_code == 200
        assert same_turns  # taken, and placed the general way on finding the chat longer
        named = again.headers["x-vm-session"]
        assert named != chat
        assert await held(proxy.store, proxy.tenant, named) == [
            QUESTION[0]["content"], answer["content"]
        ]
        assert len(await held(proxy.store, proxy.tenant, chat)) == 4


async def test_the_same_request_failing_upstream_stores_nothing(
    same_turns: list[SameTurn],
) -> None:
    async with serve(reply, vm_settings()) as proxy:
        body = {"model": "gpt-4o", "messages": [user("Please FAIL now.")]}
        # The upstream fails every time: the question is stored alone the first time.
        first = await proxy.raw_chat(body)
        assert first.status_code == 500
        before = await contents(proxy.store, proxy.tenant)
        for _ in range(2):
            response = await proxy.raw_chat(body)
            assert response.status_code == 500
            assert response.json()["error"]["message"] == "boom"
        assert await contents(proxy.store, proxy.tenant) == before


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.parametrize("placed_before", [False, True])
async def test_the_same_request_after_its_chat_went_on_unseen_by_the_cache(
    backend: str, placed_before: bool, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
    same_turns: list[SameTurn], decided: list[int],
) -> None:
    """The chat went on by a path that stores without telling the prefix cache (a request
    of four new questions, failed upstream, stored the general way): the row the cache
    holds is the one from before, still ending with the answer. The store's version says
    it moved on, so the response names a branch ending with the answer, never the chat.
    (Found by a review: the named conversation held the four questions after the answer.)
    `placed_before`: the request was sent again once before, so that its answer is
    remembered as placed on the chat (proxy.loop.repeats) and taken by its bytes."""

    def model(request: httpx.Request) -> httpx.Response:
        if len(orjson.loads(request.content)["messages"]) > 1:
            return httpx.Response(500, json={"error": {"message": "boom", "type": "x"}})
        return reply(request)

    store = await kept_open(store_url(backend, tmp_path), monkeypatch)
    async with serve(model, vm_settings(), store) as proxy:
        body = {"model": "gpt-4o", "messages": QUESTION}
        first = await proxy.raw_chat(body)
        answer = first.json()["choices"][0]["message"]
        chat = first.headers["x-vm-session"]
        if placed_before:
            assert (await proxy.raw_chat(body)).headers["x-vm-session"] == chat
            (repeat,) = proxy.app.state.repeats._repeats.values()
            assert repeat.placed is not None and repeat.placed.conv_id == chat
        more = [user(f"Question {i}?") for i in range(2, 6)]
        failed = await proxy.raw_chat({"model": "gpt-4o", "messages": [*QUESTION, answer, *more]})
        assert failed.status_code == 500
        assert len(await held(store, proxy.tenant, chat)) == 6  # stored alone, on the chat
        again = await proxy.raw_chat(body)
        assert again.status_code == 200 and same_turns
        # Every request is decided (short_turn) but this last one when it was sent again
        # before: then it is taken by its bytes.
        sent = 4 if placed_before else 3
        assert len(decided) == (sent - 1 if placed_before else sent)
        named = again.headers["x-vm-session"]
        assert named != chat
        assert await held(store, proxy.tenant, named) == [
            QUESTION[0]["content"], answer["content"]
        ]


async def test_a_continuation_after_messages_stored_alone_names_where_its_answer_is() -> None:
    """After a request's questions are stored alone (its upstream failed), the chat's
    older history continued another way is placed on a fork, and the response names the
    fork that holds it (found by a review; before, it named the chat, whose row the prefix
    cache kept from before the questions were stored)."""

    def model(request: httpx.Request) -> httpx.Response:
        if len(orjson.loads(request.content)["messages"]) > 3:
            return httpx.Response(500, json={"error": {"message": "boom", "type": "x"}})
        return reply(request)

    async with serve(model, vm_settings()) as proxy:
        first = await proxy.raw_chat({"model": "gpt-4o", "messages": QUESTION})
        answer = first.json()["choices"][0]["message"]
        chat = first.headers["x-vm-session"]
        more = [user(f"Question {i}?") for i in range(2, 6)]
        failed = await proxy.raw_chat({"model": "gpt-4o", "messages": [*QUESTION, answer, *more]})
        assert failed.status_code == 500
        other = [*QUESTION, answer, user("Another question?")]
        went = await proxy.raw_chat({"model": "gpt-4o", "messages": other})
        assert went.status_code == 200
        named = went.headers["x-vm-session"]
        assert named != chat
        assert await held(proxy.store, proxy.tenant, named) == [
            *(m["content"] for m in other), went.json()["choices"][0]["message"]["content"]
        ]
        assert len(await held(proxy.store, proxy.tenant, chat)) == 6
