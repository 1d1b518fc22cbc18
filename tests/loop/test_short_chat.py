"""Issue 15: the next turn of a short chat is placed directly (proxy.loop.short_chat), and
stores exactly what the general path stores: the same conversations, rows and pages, the
same headers, whatever the chats do (edits, errors, crossing the threshold)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import orjson
import pytest

from proxy.loop.short_chat import ShortTurn, short_turn
from proxy.store import open_store
from proxy.store.base import PageStore, StoreError
from proxy.store.codec import encode_page
from proxy.store.memory import MemoryStore
from tests.loop.harness import fresh_store, serve, vm_settings
from tests.loop.scripted import Pieces

VM_HEADERS = ("x-vm-session", "x-vm-faults", "x-vm-prompt-tokens", "x-vm-prompt-tokens-full")


def reply(request: httpx.Request) -> httpx.Response:
    """An answer that depends on the question (so every chat's chain differs); a question
    holding FAIL gets a server error."""
    body = _json(request)
    asked = str(body["messages"][-1].get("content"))
    if "FAIL" in asked:
        return httpx.Response(500, json={"error": {"message": "boom", "type": "server_error"}})
    answer = f"About that ({len(asked)} characters): noted."
    if "AT LENGTH" in asked:
        answer += " More." * 3_000  # past OFF_LOOP_CHARS: stored the general way
    return httpx.Response(200, json={
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": answer,
        }}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    })


def _json(request: httpx.Request) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(request.content)
    return parsed


def user(text: str, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": text, **extra}


def chats() -> list[list[dict[str, Any] | None]]:
    """The requests' histories, each turn resending what came before (answers are filled
    in as they come: None stands for the previous request's answer)."""
    long = " ".join(f"word{i}" for i in range(260))
    return [
        # A plain chat with a system prompt.
        [{"role": "system", "content": "Be brief."}, user("Hello there, first question.")],
        [None, user("Second question, about ferries.")],
        [None, user("Third question, about trains.")],
        # An edit: the first question asked again differently (a fork of the first chat).
        [{"role": "system", "content": "Be brief."}, user("Hello there, other question.")],
        [None, user("And a follow-up on the fork.")],
        # A named speaker (a field the fingerprint takes, and the pages keep).
        [user("Named one.", name="ann")],
        [None, user("Named two.", name="ann")],
        # An upstream error: the question stored alone; then the chat goes on past it.
        [user("Opening of a chat that fails.")],
        [None, user("This one FAILS upstream.")],
        # A long answer (stored the general way, off the loop); its chat is then past the
        # threshold.
        [user("Tell me AT LENGTH.")],
        [None, user("And after the long answer?")],
        # A long chat that crosses vm.activate_above (1,500) on its third turn.
        [user("Long one: " + long)],
        [None, user("Long two: " + long)],
        [None, user("Long three: " + long)],
        [None, user("Long four: " + long)],
    ]


async def drive(store: PageStore) -> tuple[list[tuple[int, dict[str, str]]], str]:
    """Send the chats' requests in order; the statuses and VM headers answered."""
    seen: list[tuple[int, dict[str, str]]] = []
    history: list[dict[str, Any]] = []
    async with serve(reply, vm_settings(), store) as proxy:
        for turn in chats():
            given = [m for m in turn if m is not None]
            messages = [*history, *given] if turn[0] is None else given
            response = await proxy.raw_chat({"model": "gpt-4o", "messages": messages})
            seen.append((response.status_code,
                         {k: response.headers.get(k, "") for k in VM_HEADERS}))
            history = list(messages)
            if response.status_code == 200:
                history.append(response.json()["choices"][0]["message"])
        tenant = proxy.tenant
    return seen, tenant


async def contents(store: PageStore, tenant: str) -> dict[str, Any]:
    """Every conversation of `tenant`: its row (but when it was written) and its message
    pages (but when they were made)."""
    found: dict[str, Any] = {}
    for info in await store.list_conversations(tenant=tenant, limit=1000):
        conv = await store.get_conversation(tenant, info.conv_id)
        assert conv is not None
        path = await store.path(tenant, info.conv_id)
        pages = await store.pages_in_range(path, 0, conv.length)
        found[conv.conv_id] = {
            "row": (conv.parent_id, conv.fork_at, conv.length, conv.version, conv.state),
            "pages": [encode_page(dataclasses.replace(p, created_at=0.0)) for p in pages],
        }
    return found


async def never(*args: Any, **kwargs: Any) -> None:
    return None


async def kept_open(url: str, monkeypatch: pytest.MonkeyPatch) -> PageStore:
    """A store that outlives the app serving it (its close, a no-op), to be read after."""
    store = await open_store(url)

    async def no_close() -> None:
        return None

    monkeypatch.setattr(store, "close", no_close)
    return store


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_a_short_turn_stores_what_the_general_path_stores(
    backend: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[ShortTurn] = []

    async def spied(*args: Any, **kwargs: Any) -> ShortTurn | None:
        found = await short_turn(*args, **kwargs)
        if found is not None:
            taken.append(found)
        return found

    def url(name: str) -> str:
        return f"sqlite:///{tmp_path}/{name}.db" if backend == "sqlite" else "memory://"

    anew = placed_anew(monkeypatch)
    monkeypatch.setattr("proxy.loop.handler.short_turn", spied)
    fast_store = await kept_open(url("fast"), monkeypatch)
    fast_seen, tenant = await drive(fast_store)
    # Every turn below the threshold took the short path but the fork's first (its
    # system prompt is stored: the general path finds where it forks) and the long
    # chat's third and fourth (past the threshold).
    assert [t.new[-1]["content"][:12] for t in taken] == [
        "Hello there,", "Second quest", "Third questi", "And a follow", "Named one.",
        "Named two.", "Opening of a", "This one FAI", "Tell me AT L", "Long one: wo",
        "Long two: wo",
    ]
    # The long answer was stored the general way (its hashes, fingerprint and page made in
    # slices and threads there), the rest with their answers here.
    assert anew == [2]
    monkeypatch.setattr("proxy.loop.handler.short_turn", never)
    general_store = await kept_open(url("general"), monkeypatch)
    general_seen, _ = await drive(general_store)
    assert fast_seen == general_seen
    assert [status for status, _ in fast_seen].count(500) == 1
    fast = await contents(fast_store, tenant)
    assert fast == await contents(general_store, tenant)
    assert len(fast) >= 4  # the chats, the fork, the failed one


def placed_anew(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths of the histories short turns placed anew the general way (their append
    found the conversation changed), as they are."""
    anew: list[int] = []
    real = ShortTurn._store_anew

    async def spied(self: ShortTurn, history: list[dict[str, Any]]) -> None:
        anew.append(len(history))
        await real(self, history)

    monkeypatch.setattr(ShortTurn, "_store_anew", spied)
    return anew


async def test_two_turns_placed_on_one_tip_at_once_go_on_it_and_on_a_fork(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two requests of one chat's next turn at once (a retry while the first is in
    flight): the first goes on the conversation, the second on a fork of its own from the
    start, and each response names the conversation its answer is on. Neither is placed
    anew: no append finds its conversation changed."""
    anew = placed_anew(monkeypatch)
    gate = asyncio.Event()
    answered = 0

    async def slow_reply(request: httpx.Request) -> httpx.Response:
        nonlocal answered
        answered += 1
        if answered >= 2:
            await gate.wait()
        return reply(request)

    async with serve(slow_reply, vm_settings()) as proxy:
        first = [user("Opening question of a raced chat.")]
        response = await proxy.raw_chat({"model": "gpt-4o", "messages": first})
        opened = response.headers["x-vm-session"]
        history = [*first, response.json()["choices"][0]["message"], user("Raced question.")]

        async def ask() -> httpx.Response:
            return await proxy.raw_chat({"model": "gpt-4o", "messages": history})

        racing = [asyncio.create_task(ask()), asyncio.create_task(ask())]
        await asyncio.sleep(0.05)
        gate.set()
        replies = await asyncio.gather(*racing)
        assert {r.status_code for r in replies} == {200}
        named = [r.headers["x-vm-session"] for r in replies]
        assert opened in named and len(set(named)) == 2
        for reply_, conv_id in zip(replies, named, strict=True):
            conv = await proxy.store.get_conversation(proxy.tenant, conv_id)
            assert conv is not None and conv.length == 4
            path = await proxy.store.path(proxy.tenant, conv_id)
            pages = await proxy.store.pages_in_range(path, 0, 4)
            assert [p.message for p in pages] == [
                *history, reply_.json()["choices"][0]["message"]
            ]
        fork = await proxy.store.get_conversation(proxy.tenant, (set(named) - {opened}).pop())
        assert fork is not None and (fork.parent_id, fork.fork_at) == (opened, 2)
        assert anew == []


@pytest.mark.parametrize("held", [0, 1], ids=["the first turn", "a later turn"])
async def test_the_next_turn_sent_while_the_turn_before_is_stored_goes_after_it(
    held: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agent sends its next turn as soon as it has the answer, while the turn before is
    still being stored (a PostgreSQL append is a round trip): the next turn waits for that
    append and goes on the conversation after it, not on the row before it (or, after a
    chat's first turn, on a new chat's row), which its own append would find changed."""
    anew = placed_anew(monkeypatch)
    questions = [user(f"Question {n} of an agent's chat.") for n in range(held + 2)]
    reached, gate = asyncio.Event(), asyncio.Event()
    real_append = MemoryStore.append

    async def slow_append(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
        if any(page.text == questions[held]["content"] for page in args[2]):
            reached.set()
            await gate.wait()  # the store's round trip, held open
        return await real_append(self, *args, **kwargs)

    monkeypatch.setattr(MemoryStore, "append", slow_append)

    def answered(history: list[dict[str, Any]]) -> dict[str, Any]:
        # The answer a turn gets (reply's words depend only on the question).
        answer = reply(httpx.Request("POST", "http://x", json={"messages": history}))
        return dict(answer.json()["choices"][0]["message"])

    histories: list[list[dict[str, Any]]] = []
    for question in questions:
        before = [*histories[-1], answered(histories[-1])] if histories else []
        histories.append([*before, question])
    async with serve(reply, vm_settings()) as proxy:
        for history in histories[:held]:
            response = await proxy.raw_chat({"model": "gpt-4o", "messages": history})
            assert response.status_code == 200
        storing = asyncio.create_task(
            proxy.raw_chat({"model": "gpt-4o", "messages": histories[held]})
        )
        await reached.wait()
        going_on = asyncio.create_task(
            proxy.raw_chat({"model": "gpt-4o", "messages": histories[held + 1]})
        )
        await asyncio.sleep(0.05)
        gate.set()
        replies = [await storing, await going_on]
        assert [r.status_code for r in replies] == [200, 200]
        sessions = {r.headers["x-vm-session"] for r in replies}
        assert len(sessions) == 1
        conv = await proxy.store.get_conversation(proxy.tenant, sessions.pop())
        length = 2 * len(questions)
        assert conv is not None and conv.length == length
        path = await proxy.store.path(proxy.tenant, conv.conv_id)
        pages = await proxy.store.pages_in_range(path, 0, length)
        assert [p.message for p in pages] == [*histories[-1], answered(histories[-1])]
        assert len(await proxy.store.list_conversations(tenant=proxy.tenant)) == 1
        assert anew == []  # each turn appended on the row its predecessor left


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"])
@pytest.mark.parametrize("upstream_s", [0.0, 0.01])
async def test_the_same_new_chat_sent_many_times_at_once_stores_each_answer_once(
    backend: str, upstream_s: float, tmp_path: Any
) -> None:
    """Twenty clients open the same chat at once (one first message, so one conversation
    id) and get twenty different answers: the question is stored once, each answer once
    (the first on the conversation, the others on forks of it, as regenerates are), and
    every response names the conversation its answer is on. (On PostgreSQL the chat's row
    is made by concurrent statements, each finding the others' rows or not.)"""
    answered = 0

    async def numbered(request: httpx.Request) -> httpx.Response:
        # Answered at once, each request is answered before the next one is placed (the
        # same request again, then); in 10 ms, all twenty are placed before any answer.
        nonlocal answered
        answered += 1
        number = answered
        if upstream_s:
            await asyncio.sleep(upstream_s)
        body = reply(request).json()
        body["choices"][0]["message"]["content"] = f"Answer number {number}."
        return httpx.Response(200, json=body)

    async with fresh_store(backend, tmp_path) as url:
        await _ask_all_at_once(numbered, url)


async def _ask_all_at_once(numbered: Any, url: str) -> None:
    async with serve(numbered, vm_settings(), await open_store(url)) as proxy:
        question = [user("The one question everybody asks first.")]
        replies = await asyncio.gather(*(
            proxy.raw_chat({"model": "gpt-4o", "messages": question}) for _ in range(20)
        ))
        assert {r.status_code for r in replies} == {200}
        store = proxy.store
        # Each answer's conversation holds the question, then that answer.
        for response in replies:
            conv_id = response.headers["x-vm-session"]
            conv = await store.get_conversation(proxy.tenant, conv_id)
            assert conv is not None and conv.length == 2
            path = await store.path(proxy.tenant, conv_id)
            pages = await store.pages_in_range(path, 0, 2)
            assert [p.message["content"] for p in pages if p.message is not None] == [
                question[0]["content"], response.json()["choices"][0]["message"]["content"]
            ]
        # Each answer stored once, on its own conversation: every conversation owns only
        # what it added. (The question, once each on the forks of openings made at once,
        # before the first was stored.)
        owned: list[str] = []
        for info in await store.list_conversations(tenant=proxy.tenant, limit=100):
            path = await store.path(proxy.tenant, info.conv_id)
            own = path.spans[0]  # the conversation's own span: from its fork on
            assert own.conv_id == info.conv_id
            for page in await store.pages_in_range(path, own.lo, 2):
                assert page.message is not None
                owned.append(page.message["content"])
        asked = question[0]["content"]
        assert sorted(o for o in owned if o != asked) == sorted(
            f"Answer number {n}." for n in range(1, 21)
        )
        assert owned.count(asked) >= 1


async def test_a_chat_from_before_a_restart_goes_on_where_it_was_stored(tmp_path: Any) -> None:
    """A process that remembers nothing of a chat (restarted) finds its history stored:
    the next turn continues the same conversation, not a new one."""
    url = f"sqlite:///{tmp_path}/store.db"
    history = [user("Before the restart.")]
    async with serve(reply, vm_settings(), await open_store(url)) as proxy:
        response = await proxy.raw_chat({"model": "gpt-4o", "messages": history})
        conv_id = response.headers["x-vm-session"]
        history += [response.json()["choices"][0]["message"], user("After it.")]
    async with serve(reply, vm_settings(), await open_store(url)) as proxy:
        response = await proxy.raw_chat({"model": "gpt-4o", "messages": history})
        assert response.headers["x-vm-session"] == conv_id
        history.append(response.json()["choices"][0]["message"])
        history.append(user("And once more."))
        response = await proxy.raw_chat({"model": "gpt-4o", "messages": history})
        assert response.headers["x-vm-session"] == conv_id
    store = await open_store(url)
    try:
        conv = await store.get_conversation(proxy.tenant, conv_id)
        assert conv is not None and conv.length == 6
        assert len(await store.list_conversations(tenant=proxy.tenant)) == 1
    finally:
        await store.close()


def streamed_reply(request: httpx.Request) -> httpx.Response:
    """`reply`'s answer, as a stream when the request asks for one."""
    answered = reply(request)
    if not _json(request).get("stream"):
        return answered
    text = answered.json()["choices"][0]["message"]["content"]
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    events = [
        b"data: " + orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                                  "created": 1, "model": "gpt-4o", **chunk}) + b"\n\n"
        for chunk in chunks
    ]
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          stream=Pieces([*events, b"data: [DONE]\n\n"]))


async def _store_down(*args: Any, **kwargs: Any) -> Any:
    raise StoreError("sqlite store failed: disk I/O error")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_new_chat_whose_store_reads_fail_is_answered_as_a_pass_through(
    stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reads fail after the request was relayed: with vm.fail_open (the default) the
    answer is given as it came, without the memory's headers, and counted as failed open."""
    monkeypatch.setattr(MemoryStore, "lookup_hashes", _store_down)
    seen: list[dict[str, Any]] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(_json(request))
        return streamed_reply(request)

    body = {"model": "gpt-4o", "messages": [user("A chat begun in an outage.")],
            "stream": stream}
    async with serve(recording, vm_settings()) as proxy:
        response = await proxy.raw_chat(body)
        metrics = (await proxy.http.get("/metrics")).text
    assert response.status_code == 200
    assert seen == [body]
    assert "x-vm-session" not in response.headers
    assert "About that" in response.text
    assert "vm_fail_open_total 1" in metrics


async def test_without_fail_open_a_new_chats_failed_reads_fail_it_before_the_upstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(MemoryStore, "lookup_hashes", _store_down)
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply(request)

    async with serve(recording, vm_settings(fail_open=False)) as proxy:
        response = await proxy.raw_chat(
            {"model": "gpt-4o", "messages": [user("A chat begun in an outage.")]}
        )
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "sqlite store failed: disk I/O error"
    assert seen == []


async def test_a_request_waits_for_the_writer_before_it_is_answered(tmp_path: Any) -> None:
    """A writer behind (its appends held here) with `max_deferred` writes pending: the next
    request is not sent upstream until the writer has caught up, so the backlog, and a
    memory-active turn's wait behind it, stay bounded under load."""
    from tests.store.conftest import hold

    asked: list[str] = []

    def recording(request: httpx.Request) -> httpx.Response:
        asked.append(str(_json(request)["messages"][-1]["content"]))
        return reply(request)

    store = await open_store(f"sqlite:///{tmp_path}/store.db")
    sqlite = store
    while not hasattr(sqlite, "max_deferred"):
        sqlite = sqlite.inner  # type: ignore[attr-defined]
    sqlite.max_deferred = 2
    started, release = hold(sqlite, "_append")
    try:
        async with serve(recording, vm_settings(), store) as proxy:
            first = await proxy.raw_chat({"model": "gpt-4o", "messages": [user("First chat.")]})
            assert first.status_code == 200  # its create and append now pending, held
            await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
            second = asyncio.ensure_future(
                proxy.raw_chat({"model": "gpt-4o", "messages": [user("Second chat.")]}))
            await asyncio.sleep(0.1)
            assert asked == ["First chat."] and not second.done()
            release.set()
            assert (await asyncio.wait_for(second, 5)).status_code == 200
            assert asked == ["First chat.", "Second chat."]
    finally:
        release.set()
