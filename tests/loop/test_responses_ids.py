"""Where a Responses answer's id is recorded: in the write that stores the answer (one
append, on every backend), so that a memory turn costs no more round trips than a chat
one; as durable as that write (a whole-history request's is deferred, and is lost or
kept with the answer); on its own only when the answer needed no write."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path as FsPath
from typing import Any

import httpx
import pytest

from proxy.loop.responses_handler import FIND_AGAIN_S
from proxy.store import open_store
from proxy.store.base import PageStore
from proxy.store.sqlite import SQLiteStore
from proxy.vm.pages import Page
from tests.loop.harness import MODEL, serve, vm_settings
from tests.loop.history import LOCKER, QUESTION, conversation
from tests.loop.scripted import ScriptedModel, agent
from tests.loop.scripted_responses import ResponsesModel
from tests.loop.test_deferred import kill_deferred_writes, stored_messages
from tests.loop.test_responses import ANSWER, as_responses

HELLO = "Hello again."


class SpiedStore:
    """A store whose appends and separate response-id writes are recorded."""

    def __init__(self, inner: PageStore) -> None:
        self.inner = inner
        self.appended: list[tuple[str, int, str | None, bool]] = []
        self.remembered: list[tuple[str, str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(
        self, tenant: str, conv_id: str, pages: Sequence[Page], **kwargs: Any
    ) -> Any:
        self.appended.append((conv_id, kwargs["new_length"], kwargs.get("response_id"),
                              kwargs.get("durable", True)))
        return await self.inner.append(tenant, conv_id, pages, **kwargs)

    async def remember_response(
        self, tenant: str, response_id: str, conv_id: str, length: int
    ) -> None:
        self.remembered.append((response_id, conv_id, length))
        await self.inner.remember_response(tenant, response_id, conv_id, length)

    def carrying(self, response_id: str) -> list[tuple[str, int, str | None, bool]]:
        return [a for a in self.appended if a[2] == response_id]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: FsPath) -> AsyncIterator[str]:
    """A store URL of each backend (PostgreSQL in a schema of its own, dropped after)."""
    if request.param == "memory":
        yield "memory://"
        return
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    url = os.environ.get("VM_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("VM_TEST_POSTGRES_URL is not set: no PostgreSQL to test against")
    separator = "&" if "?" in url else "?"
    url = f"{url}{separator}schema=vmtest_{uuid.uuid4().hex[:12]}"
    yield url
    store = await open_store(url)
    await store.drop_schema()  # type: ignore[attr-defined]
    await store.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_the_id_is_recorded_in_the_answers_own_append(backend: str, stream: bool) -> None:
    """A whole-history memory turn, then chained ones right after it (before its deferred
    write had a moment to go): each answer's append carries its id, no separate write
    records one, and each id finds where its answer ended."""
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(conversation(120))
    spy = SpiedStore(await open_store(backend))
    async with serve(model, path="/responses", store=spy) as proxy:  # type: ignore[arg-type]

        async def ask(**request: Any) -> Any:
            if not stream:
                return await proxy.client.responses.create(model=MODEL, **request)
            async with proxy.client.responses.stream(model=MODEL, **request) as events:
                return await events.get_final_response()

        first = await ask(instructions=instructions,
                          input=[*items, {"role": "user", "content": HELLO}])
        second = await ask(previous_response_id=first.id, input=QUESTION)
        third = await ask(previous_response_id=second.id, input="And once more: " + QUESTION)
        assert third.output_text == ANSWER
        assert spy.remembered == []
        for response, durable in ((first, False), (second, True), (third, True)):
            (append,) = spy.carrying(response.id)
            conv_id, length, _, written_now = append
            assert written_now is durable  # the whole-history turn's write is deferred
            assert await proxy.store.find_response(proxy.tenant, response.id) == (
                conv_id, length)
            stored = await stored_messages(proxy.store, proxy.tenant, conv_id)
            assert stored[length - 1]["role"] == "assistant"
        assert spy.carrying(first.id)[0][1] == len(items) + 3  # instructions, items, hello, answer


async def test_on_sqlite_the_id_costs_no_write_of_its_own(tmp_path: FsPath) -> None:
    """The SQLite writer runs no write for an id: a whole-history turn after the first
    is answered without waiting for any write (its appends are deferred), as a chat turn
    is; a chained turn waits for its question's append and its answer's, which carries the
    id (there was a third write, the id's, each a round trip to the writer thread)."""
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(conversation(120))
    items.append({"role": "user", "content": HELLO})
    store = await open_store(f"sqlite:///{tmp_path}/store.db")
    async with serve(model, path="/responses", store=store) as proxy:
        first = await proxy.client.responses.create(
            model=MODEL, instructions=instructions, input=items)
        inner = proxy.store
        while not isinstance(inner, SQLiteStore):
            inner = inner.inner  # type: ignore[attr-defined]
        writes: list[str] = []
        write = inner._write

        async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            writes.append(fn.__name__)
            return await write(fn, *args, **kwargs)

        inner._write = counted  # type: ignore[method-assign]
        items += [o.model_dump(exclude_none=True) for o in first.output]
        resent = await proxy.client.responses.create(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": "Thanks."}])
        assert writes == []
        chained = await proxy.client.responses.create(
            model=MODEL, previous_response_id=resent.id, input=QUESTION)
        inner._write = write  # type: ignore[method-assign]
        assert chained.output_text == ANSWER
        assert writes == ["_append", "_append"]
        for response in (resent, chained):
            assert await proxy.store.find_response(proxy.tenant, response.id) is not None


async def test_a_lost_deferred_write_loses_the_answer_and_its_id_together(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after answering a whole-history request and before its deferred
    write: neither the answer nor its id is stored, so `previous_response_id` is refused
    as unknown (not found pointing past what is stored); the client's resend of the whole
    history recovers it, and chaining goes on from there."""
    url = f"sqlite:///{tmp_path}/store.db"
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(conversation(120))
    items.append({"role": "user", "content": HELLO})
    async with serve(model, path="/responses", store=await open_store(url)) as proxy:
        dropped = kill_deferred_writes(monkeypatch)
        lost = await proxy.client.responses.create(
            model=MODEL, instructions=instructions, input=items)
        assert lost.output_text and dropped
        tenant = proxy.tenant
    monkeypatch.undo()

    async with serve(model, path="/responses", store=await open_store(url)) as proxy:
        assert await proxy.store.find_response(tenant, lost.id) is None
        convs = await proxy.store.list_conversations(tenant=tenant)
        assert all(conv.length == 0 for conv in convs)  # not a page of that turn
        refused = await proxy.http.post(
            "/v1/responses", headers={"authorization": "Bearer sk-test"},
            json={"model": MODEL, "input": QUESTION, "previous_response_id": lost.id},
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "previous_response_not_found"
        resent = await proxy.client.responses.create(
            model=MODEL, instructions=instructions,
            input=[*items, *[o.model_dump(exclude_none=True) for o in lost.output],
                   {"role": "user", "content": "Thanks."}])
        chained = await proxy.client.responses.create(
            model=MODEL, previous_response_id=resent.id, input=QUESTION)
        assert chained.output_text == ANSWER


def same_answer(request: httpx.Request) -> httpx.Response:
    """A Responses upstream that answers every request with the same items, ids included."""
    return httpx.Response(200, json={
        "id": "resp_upstream", "object": "response", "created_at": 1, "status": "completed",
        "model": MODEL, "output": [{
            "id": "msg_same", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "Noted.", "annotations": []}]}],
        "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": 12}})


async def test_an_answer_stored_already_has_its_id_recorded_alone() -> None:
    """The same question chained twice onto one response and answered alike: the second
    answer is found stored by the first, so no append is made for it, and its id is
    recorded on its own (else `previous_response_id` could not continue from it)."""
    instructions, items = as_responses(conversation(120))
    spy = SpiedStore(await open_store("memory://"))
    async with serve(same_answer, path="/responses", store=spy) as proxy:  # type: ignore[arg-type]
        first = await proxy.client.responses.create(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": HELLO}])
        one, two = [
            await proxy.client.responses.create(
                model=MODEL, previous_response_id=first.id, input=QUESTION)
            for _ in range(2)]
        assert spy.carrying(one.id) and not spy.carrying(two.id)
        assert [r[0] for r in spy.remembered] == [two.id]
        found = await proxy.store.find_response(proxy.tenant, two.id)
        assert found is not None
        assert found == await proxy.store.find_response(proxy.tenant, one.id)
        after = await proxy.client.responses.create(
            model=MODEL, previous_response_id=two.id, input="And once more.")
        assert after.output_text == "Noted."


@pytest.mark.parametrize("responses", ["native", "chat"])
async def test_below_the_threshold_the_id_rides_in_the_one_append_of_the_turn(
    responses: str, tmp_path: FsPath
) -> None:
    """A short chat's question is held and stored with its answer in one append (relayed
    from a native upstream, or answered through a chat one): the id goes in it too."""
    model = (ResponsesModel(agent(LOCKER)) if responses == "native"
             else ScriptedModel(agent(LOCKER)))
    path = "/responses" if responses == "native" else "/chat/completions"
    spy = SpiedStore(await open_store(f"sqlite:///{tmp_path}/store.db"))
    settings = vm_settings(responses=responses)
    async with serve(model, settings, spy, path=path) as proxy:  # type: ignore[arg-type]
        first = await proxy.client.responses.create(model=MODEL, input="Hello there!")
        second = await proxy.client.responses.create(
            model=MODEL, input="How are you?", previous_response_id=first.id)
        assert second.output_text.startswith("Noted")
        assert spy.remembered == []
        ((conv_id, length, _, durable),) = spy.carrying(first.id)
        assert (length, durable) == (2, False)  # the question and the answer, deferred
        assert await proxy.store.find_response(proxy.tenant, first.id) == (conv_id, 2)


class LosingStore(SpiedStore):
    """A store that found a response id pending in a deferred write which then was lost:
    the id points at `lost` (conversation, length), which is not stored."""

    def __init__(self, inner: PageStore) -> None:
        super().__init__(inner)
        self.lost: dict[str, tuple[str, int]] = {}

    async def find_response(self, tenant: str, response_id: str) -> tuple[str, int] | None:
        if response_id in self.lost:
            return self.lost[response_id]
        return await self.inner.find_response(tenant, response_id)


@pytest.mark.parametrize("where", ["conversation", "past_its_end"])
@pytest.mark.parametrize("responses", ["native", "chat"])
async def test_an_id_found_pending_whose_write_was_lost_is_refused_as_not_found(
    where: str, responses: str
) -> None:
    """find_response answers from the ids deferred writes will record; should that write
    fail after, the chained request finds no stored place to continue from: a 400 naming
    `previous_response_id`, as for an unknown id, not a retryable error forever."""
    model = (ResponsesModel(agent(LOCKER)) if responses == "native"
             else ScriptedModel(agent(LOCKER)))
    instructions, items = as_responses(conversation(120))
    spy = LosingStore(await open_store("memory://"))
    path = "/responses" if responses == "native" else "/chat/completions"
    async with serve(model, vm_settings(responses=responses), store=spy,  # type: ignore[arg-type]
                     path=path) as proxy:
        first = await proxy.client.responses.create(
            model=MODEL, instructions=instructions,
            input=[*items, {"role": "user", "content": HELLO}])
        found = await proxy.store.find_response(proxy.tenant, first.id)
        assert found is not None
        spy.lost["resp_lost"] = (
            ("cgone", found[1]) if where == "conversation" else (found[0], found[1] + 40))
        refused = await proxy.http.post(
            "/v1/responses", headers={"authorization": "Bearer sk-test"},
            json={"model": MODEL, "input": QUESTION, "previous_response_id": "resp_lost"},
        )
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == (
            "previous_response_not_found", "previous_response_id")


class LateStore(SpiedStore):
    """A store shared with another replica whose answers' writes land late: a response id
    is found only from its `late`-th lookup on."""

    def __init__(self, inner: PageStore, late: int) -> None:
        super().__init__(inner)
        self.late = late
        self.lookups = 0

    async def find_response(self, tenant: str, response_id: str) -> tuple[str, int] | None:
        self.lookups += 1
        if self.lookups < self.late:
            return None
        return await self.inner.find_response(tenant, response_id)


@pytest.mark.parametrize("late", [2, 4])
async def test_an_id_whose_write_lands_late_is_waited_for(late: int) -> None:
    # Another replica answered a whole history and sent the answer before storing it
    # (its id too); an agent continues from that answer at once, here.
    model = ResponsesModel(agent(LOCKER))
    instructions, items = as_responses(conversation(120))
    spy = LateStore(await open_store("memory://"), late=0)
    async with serve(model, path="/responses", store=spy) as proxy:  # type: ignore[arg-type]
        first = await proxy.client.responses.create(
            model=MODEL, instructions=instructions, input=items)
        spy.late, spy.lookups = late, 0
        second = await proxy.client.responses.create(
            model=MODEL, previous_response_id=first.id, input=QUESTION)
    assert second.output_text == ANSWER
    assert spy.lookups >= late


async def test_an_id_never_stored_is_refused_after_a_short_wait() -> None:
    model = ResponsesModel(agent(LOCKER))
    spy = LateStore(await open_store("memory://"), late=0)
    async with serve(model, path="/responses", store=spy) as proxy:  # type: ignore[arg-type]
        started = time.monotonic()
        refused = await proxy.http.post(
            "/v1/responses", headers={"authorization": "Bearer sk-test"},
            json={"model": MODEL, "input": QUESTION, "previous_response_id": "resp_never"})
        waited = time.monotonic() - started
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "previous_response_not_found"
    assert spy.lookups == 1 + len(FIND_AGAIN_S)
    assert sum(FIND_AGAIN_S) <= waited < 5
