"""Issue 15: short chats stored cheaply. A whole-history request is answered before its
messages are written (a process killed in between loses nothing: the next request resends
them); under X-VM-Session the turn is written before the answer; lean pages are derived
when the conversation first needs memory."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path as FsPath
from typing import Any

import httpx
import pytest

from proxy.loop.conversations import Conversations
from proxy.loop.storing import Ingester
from proxy.store import open_store
from proxy.store.base import PageStore, Path, PathSpan
from proxy.store.sqlite import SQLiteStore
from proxy.tokens import counter_for_model
from proxy.vm.identity import chain_hashes
from proxy.vm.lean import is_lean
from tests.loop.harness import serve, vm_settings

ANSWER = "Noted, thanks."


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    })


def question(i: int) -> dict[str, Any]:
    return {"role": "user", "content": f"Question {i}: what about the harbour ferry number {i}?"}


async def stored_messages(store: PageStore, tenant: str, conv_id: str) -> list[dict[str, Any]]:
    conv = await store.get_conversation(tenant, conv_id)
    assert conv is not None
    path = await store.path(tenant, conv_id)
    return [dict(p.message or {}) for p in await store.pages_in_range(path, 0, conv.length)]


def kill_deferred_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, deferred writes are queued and never run, as when the process is
    killed after answering and before its writer commits them."""
    dropped: list[str] = []

    def dropped_write(
        self: SQLiteStore, fn: Any, tenant: str, conv_id: str, *args: Any, heavy: bool = False
    ) -> asyncio.Future[Any]:
        dropped.append(conv_id)
        return asyncio.get_running_loop().create_future()  # never committed

    monkeypatch.setattr(SQLiteStore, "_defer", dropped_write)
    return dropped


async def test_a_kill_between_the_answer_and_its_deferred_write_loses_no_message(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    settings = vm_settings()
    messages = [{"role": "system", "content": "Be brief."}, question(0)]
    async with serve(answer, settings, await open_store(url)) as proxy:
        reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
        assert reply.status_code == 200
        messages += [reply.json()["choices"][0]["message"], question(1)]
        reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
        assert reply.status_code == 200
        # The next turn is answered, and then the process dies before its writes run.
        dropped = kill_deferred_writes(monkeypatch)
        messages += [reply.json()["choices"][0]["message"], question(2)]
        reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"] == ANSWER
        assert dropped  # the question and the answer of that turn were never written
        tenant = proxy.tenant
    monkeypatch.undo()

    # A new process on the same file: what the kill lost is not there ...
    store = await open_store(url)
    conv_id = reply.headers["x-vm-session"]
    assert len(await stored_messages(store, tenant, conv_id)) == len(messages) - 1
    # ... and the client's next request, which resends it, stores every message.
    messages += [reply.json()["choices"][0]["message"], question(3)]
    async with serve(answer, settings, store) as proxy:
        reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
        assert reply.status_code == 200
        conv_id = reply.headers["x-vm-session"]
        expected = [*messages, {"role": "assistant", "content": ANSWER}]
        stored = await stored_messages(proxy.store, tenant, conv_id)
        assert [(m["role"], m["content"]) for m in stored] == [
            (m["role"], m["content"]) for m in expected
        ]


async def test_a_session_turn_is_written_before_its_answer(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    async with serve(answer, vm_settings(), await open_store(url)) as proxy:
        dropped = kill_deferred_writes(monkeypatch)
        headers = {"x-vm-session": "s1"}
        for i in range(2):
            reply = await proxy.raw_chat(
                {"model": "gpt-4o", "messages": [question(i)]}, headers)
            assert reply.status_code == 200
        assert dropped == []
        conv_id = await proxy.store.resolve_session(proxy.tenant, "s1")
        assert conv_id is not None
        stored = await stored_messages(proxy.store, proxy.tenant, conv_id)
        assert [m["content"] for m in stored] == [
            question(0)["content"], ANSWER, question(1)["content"], ANSWER
        ]


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
async def test_lean_pages_are_derived_when_the_conversation_first_needs_memory(
    url: str, tmp_path: FsPath
) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/s.db" if url == "sqlite" else url,
                             cache_pages=100)
    settings = vm_settings(activate_above=400)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "My locker code is 4417."}]
    async with serve(answer, settings, store) as proxy:
        reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
        conv_id = reply.headers["x-vm-session"]
        path = await store.path(proxy.tenant, conv_id)
        first = (await store.get_pages(path, ["msg_0"]))["msg_0"]
        assert is_lean(first)  # below activate_above: stored lean, not indexed
        assert await store.search(path, "locker code", limit=3) == []
        for i in range(40):
            messages += [{"role": "assistant", "content": ANSWER}, question(i)]
            reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
            assert reply.status_code == 200
        conv_id = reply.headers["x-vm-session"]
        conv = await store.get_conversation(proxy.tenant, conv_id)
        assert conv is not None
        path = await store.path(proxy.tenant, conv_id)
        pages = await store.pages_in_range(path, 0, conv.length)
        assert pages and not any(is_lean(p) for p in pages)
        hits = await store.search(path, "locker code", limit=3)
        assert "msg_0" in [h.page.page_id for h in hits]
        claims = await store.pages_in_range(path, 0, 1, prefixes=("claim",))
        assert claims  # the claim of the first message was derived with it


def count_appends(store: PageStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of pages of every append to `store` from now on."""
    appends: list[int] = []
    inner = store.append

    async def counted(tenant: str, conv_id: str, pages: Any, **options: Any) -> Any:
        appends.append(len(pages))
        return await inner(tenant, conv_id, pages, **options)

    monkeypatch.setattr(store, "append", counted)
    return appends


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
async def test_a_short_chat_turn_is_stored_in_one_append_with_its_answer(
    url: str, tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/s.db" if url == "sqlite" else url)
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}]
    async with serve(answer, vm_settings(), store) as proxy:
        appends = count_appends(proxy.store, monkeypatch)
        for i in range(3):
            messages.append(question(i))
            reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
            assert reply.status_code == 200
            messages.append(reply.json()["choices"][0]["message"])
        # The first turn's system prompt and question, then one question per turn: each
        # with its answer.
        assert appends == [3, 2, 2]
        stored = await stored_messages(proxy.store, proxy.tenant, reply.headers["x-vm-session"])
        assert [m["content"] for m in stored] == [m["content"] for m in messages]


def failing(request: httpx.Request) -> httpx.Response:
    return httpx.Response(500, json={"error": {"message": "upstream broke", "type": "server_error",
                                               "param": None, "code": None}})


def unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused")


@pytest.mark.parametrize("upstream", [failing, unreachable])
async def test_a_question_without_an_answer_is_still_stored(upstream: Any) -> None:
    """Held for its answer, a question is stored alone when no answer comes."""
    answers = [answer, upstream]

    def model(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)(request)

    messages = [question(0)]
    async with serve(model) as proxy:
        reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
        messages += [reply.json()["choices"][0]["message"], question(1)]
        broken = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
        assert broken.status_code >= 500
        stored = await stored_messages(proxy.store, proxy.tenant, reply.headers["x-vm-session"])
        assert [m["content"] for m in stored] == [m["content"] for m in messages]


LEAN_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief. Today is 3 May 2024."},
    {"role": "user", "content": "On 4 May 2024 I moved to Oslo.", "name": "ada"},
    {"role": "assistant", "content": "Noted: Oslo, from 4 May."},
    {"role": "user", "content": [{"type": "text", "text": "And this photo?"},
                                 {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
    {"role": "assistant", "content": None, "refusal": "I can't see it."},
]


async def test_lean_tokens_count_what_the_lean_pages_count() -> None:
    """What placing a request counts for its held messages is what their lean pages say."""
    ingester = Ingester(lambda: counter_for_model("gpt-4o"), 8, lean_up_to=100_000)
    store = await open_store("memory://")
    path = Path("t", (PathSpan("c", 0, None),))
    before = {"hash": "", "tokens": 17, "counters": {}}
    hashes = chain_hashes("t", LEAN_MESSAGES)
    made = await ingester.ingest(store, "t", path, 0, LEAN_MESSAGES, hashes, before)
    assert all(is_lean(p) for p in made.pages)
    for n in range(1, len(LEAN_MESSAGES) + 1):
        part = await ingester.ingest(store, "t", path, 0, LEAN_MESSAGES[:n], hashes[:n], before)
        assert ingester.lean_tokens(LEAN_MESSAGES[:n], before) == part.state["tokens"]
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    result = {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    assert ingester.lean_tokens([call], before) is None
    assert ingester.lean_tokens([result], before) is None
    await store.close()


async def test_a_short_chat_turn_ingests_its_messages_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingested: list[int] = []
    ingest = Ingester.ingest

    async def counted(self: Ingester, *args: Any) -> Any:
        ingested.append(len(args[4]))
        return await ingest(self, *args)

    monkeypatch.setattr(Ingester, "ingest", counted)
    messages: list[dict[str, Any]] = []
    async with serve(answer) as proxy:
        for i in range(3):
            messages.append(question(i))
            reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
            messages.append(reply.json()["choices"][0]["message"])
    assert ingested == [2, 2, 2]  # each turn's question and answer, together


async def test_a_stored_answer_leaves_nothing_to_flush_after_the_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The answer stored the held question with it: no shielded flush runs after the
    response (the common short chat pays for no extra task)."""
    flushed: list[str] = []
    flush = Conversations.flush

    async def counted(self: Conversations, tenant: str) -> None:
        flushed.append(tenant)
        await flush(self, tenant)

    monkeypatch.setattr(Conversations, "flush", counted)
    messages: list[dict[str, Any]] = []
    async with serve(answer) as proxy:
        for i in range(3):
            messages.append(question(i))
            reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
            messages.append(reply.json()["choices"][0]["message"])
        stored = await stored_messages(proxy.store, proxy.tenant, reply.headers["x-vm-session"])
    assert [m["content"] for m in stored] == [m["content"] for m in messages]
    assert flushed == []


@pytest.mark.parametrize("responses", ["native", "chat"])
@pytest.mark.parametrize("upstream", [failing, unreachable])
async def test_a_responses_question_without_an_answer_is_still_stored(
    upstream: Any, responses: str
) -> None:
    """The same through the Responses API, on either kind of upstream."""
    path = "/responses" if responses == "native" else "/chat/completions"
    async with serve(upstream, vm_settings(responses=responses), path=path) as proxy:
        broken = await proxy.http.post(
            "/v1/responses", headers={"authorization": "Bearer sk-test"},
            json={"model": "gpt-4o", "input": [question(0)]},
        )
        assert broken.status_code >= 500
        convs = await proxy.store.list_conversations(tenant=proxy.tenant)
        assert len(convs) == 1
        stored = await stored_messages(proxy.store, proxy.tenant, convs[0].conv_id)
        assert [m["content"] for m in stored] == [question(0)["content"]]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
async def test_two_short_chats_opening_alike_keep_their_own_turns(
    order: tuple[int, int], tmp_path: FsPath
) -> None:
    """Two clients of one tenant open with the same words at once: one conversation, whose
    first answer is one of theirs. The other's answer is placed again (on a fork), and
    each client's next turn is stored after its own answer, never after the other's."""
    arrived = 0
    both = asyncio.Event()

    async def model(request: httpx.Request) -> httpx.Response:
        nonlocal arrived
        n, arrived = arrived, arrived + 1
        if arrived >= 2:
            both.set()
        await both.wait()  # both requests placed before either is answered
        return httpx.Response(200, json={
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"Answer {n}"},
                         "finish_reason": "stop"}],
        })

    store = await open_store(f"sqlite:///{tmp_path}/s.db")
    opening = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    async with serve(model, vm_settings(), store) as proxy:
        replies = await asyncio.gather(
            *(proxy.raw_chat({"model": "gpt-4o", "messages": opening}) for _ in range(2))
        )
        chats = [[*opening, reply.json()["choices"][0]["message"]] for reply in replies]
        for i in order:
            chats[i].append({"role": "user", "content": f"I am client {i}."})
            reply = await proxy.raw_chat({"model": "gpt-4o", "messages": chats[i]})
            chats[i].append(reply.json()["choices"][0]["message"])
            stored = await stored_messages(
                proxy.store, proxy.tenant, reply.headers["x-vm-session"]
            )
            assert [m["content"] for m in stored] == [m["content"] for m in chats[i]]


def hold_the_writer(store: SQLiteStore) -> tuple[threading.Event, asyncio.Future[Any]]:
    """Keep the store's writer thread busy (as another client's 30 MB page does) until
    the event is set; the future is that write."""
    release = threading.Event()
    busy = asyncio.ensure_future(store._write(lambda conn: release.wait(30)))
    return release, busy


async def test_whole_history_requests_are_answered_while_the_writer_is_busy(
    tmp_path: FsPath,
) -> None:
    """Issue 13: a short chat of one client waits for no other client's write. A new chat
    creates its conversation with its turn, after the answer; a regenerate given the answer
    stored already stores nothing (proxy.loop.short_chat.SameTurn); an X-VM-Session request
    still waits until its turn is written."""
    store = await open_store(f"sqlite:///{tmp_path}/store.db")
    assert isinstance(store, SQLiteStore)
    opening = [question(0)]
    async with serve(answer, vm_settings(), store) as proxy:
        first = await proxy.raw_chat({"model": "gpt-4o", "messages": opening})
        while store._deferred:  # its turn is written (a regenerate reads it)
            await asyncio.sleep(0.01)
        release, busy = hold_the_writer(store)
        try:
            session = asyncio.ensure_future(proxy.raw_chat(
                {"model": "gpt-4o", "messages": [question(9)]}, {"x-vm-session": "s1"}))
            # A liveness guard, not a timing: without deferral both wait for the release.
            new_chat, regenerate = await asyncio.wait_for(asyncio.gather(
                proxy.raw_chat({"model": "gpt-4o", "messages": [question(1)]}),
                proxy.raw_chat({"model": "gpt-4o", "messages": opening}),
            ), 20)
            assert not busy.done() and not session.done()
        finally:
            release.set()
        assert (await session).status_code == 200
        assert new_chat.status_code == regenerate.status_code == 200
        ids = [reply.headers["x-vm-session"] for reply in (first, new_chat, regenerate)]
        assert len(set(ids)) == 2 and ids[2] == ids[0]  # the regenerate: the same answer
        expected = [[question(0)["content"], ANSWER], [question(1)["content"], ANSWER],
                    [question(0)["content"], ANSWER]]
        for conv_id, contents in zip(ids, expected, strict=True):
            stored = await stored_messages(store, proxy.tenant, conv_id)
            assert [m["content"] for m in stored] == contents


@pytest.mark.parametrize("lost", ["new chat", "regenerate"])
async def test_a_kill_before_a_new_conversation_is_written_loses_no_message(
    lost: str, tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after answering the first turn of a new chat (or a regenerate given
    another answer, on a fork of its own) and before its writer ran: the conversation was
    never created. The client's next request, resending everything, stores every message."""
    url = f"sqlite:///{tmp_path}/store.db"
    messages: list[dict[str, Any]] = [question(0)]
    calls = 0

    def answers(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        reply = answer(request)
        if calls == 2:  # the regenerate's: another answer (the same one forks nothing)
            body = reply.json()
            body["choices"][0]["message"]["content"] = "Noted, once more."
            reply = httpx.Response(200, json=body)
        return reply

    async with serve(answers, vm_settings(), await open_store(url)) as proxy:
        if lost == "regenerate":
            reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
            kept = reply.headers["x-vm-session"]
        dropped = kill_deferred_writes(monkeypatch)
        reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
        assert reply.status_code == 200
        conv_id = reply.headers["x-vm-session"]
        assert dropped == [conv_id, conv_id]  # its create, then its turn
        tenant = proxy.tenant
    monkeypatch.undo()

    store = await open_store(url)
    assert await store.get_conversation(tenant, conv_id) is None
    if lost == "regenerate":
        assert len(await stored_messages(store, tenant, kept)) == 2  # the first answer's
    messages += [reply.json()["choices"][0]["message"], question(1)]
    async with serve(answer, vm_settings(), store) as proxy:
        reply = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
        assert reply.status_code == 200
        stored = await stored_messages(store, tenant, reply.headers["x-vm-session"])
        assert [(m["role"], m["content"]) for m in stored] == [
            (m["role"], m["content"]) for m in [*messages, {"role": "assistant", "content": ANSWER}]
        ]
