"""The same request again, decided once (proxy.loop.repeats): a short request sent again
byte for byte takes what was decided of it before, while the prefix cache still holds the
entry it was decided by; the same answer again is named on the conversation it was found
on while that conversation's version is the same, read once an iteration of the loop."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from proxy.http.state import AppState
from proxy.loop.held import root_path
from proxy.loop.prefix_cache import PrefixCache, Remembered, fingerprint_all
from proxy.loop.repeats import PlacedAnswer, Repeat, Repeats
from proxy.loop.short_chat import SameTurn
from proxy.serving import SERVING
from proxy.store.base import Conversation, StoreError
from tests.loop.harness import serve, vm_settings
from tests.loop.test_same_request import QUESTION, held, store_url
from tests.loop.test_short_chat import kept_open, reply, user

ANSWER = {"role": "assistant", "content": "Paris."}


def a_row(conv_id: str, version: int) -> Conversation:
    return Conversation("t", conv_id, None, 0, 2, version, {"hash": "h2"}, 0.0)


def a_repeat(conv_id: str = "c1") -> Repeat:
    return Repeat([1, 2], Remembered(2, "h2", conv_id), tokens=12, answer_name="gpt-4o")


# --- the memo itself -------------------------------------------------------------------


def test_a_decision_is_kept_by_tenant_and_bytes() -> None:
    repeats = Repeats()
    repeat = a_repeat()
    repeats.keep("t1", b'{"messages": []}', repeat)
    assert repeats.get("t1", b'{"messages": []}') is repeat
    assert repeats.get("t2", b'{"messages": []}') is None  # another tenant's
    assert repeats.get("t1", b'{"messages":[]}') is None  # other bytes, the same JSON


def test_the_oldest_decision_goes_first_and_long_bodies_are_not_kept() -> None:
    repeats = Repeats(capacity=2, max_body=10)
    first, second, third = a_repeat("c1"), a_repeat("c2"), a_repeat("c3")
    repeats.keep("t", b"one", first)
    repeats.keep("t", b"two", second)
    assert repeats.get("t", b"one") is first  # used: now the newest
    repeats.keep("t", b"three", third)
    assert len(repeats) == 2
    assert repeats.get("t", b"two") is None
    assert repeats.get("t", b"one") is first and repeats.get("t", b"three") is third
    repeats.keep("t", b"x" * 11, a_repeat())
    assert repeats.get("t", b"x" * 11) is None and len(repeats) == 2


def test_the_prefix_cache_holds_an_entry_until_it_changes_or_goes() -> None:
    cache = PrefixCache(capacity=2)
    prints = fingerprint_all([user("a"), ANSWER])
    conv = Conversation("t", "c1", None, 0, 2, 1, {"hash": "h2"}, 0.0)
    path = root_path("t", "c1")
    cache.remember("t", prints, "h2", conv, path)
    found = cache.longest("t", prints)
    assert found is not None and cache.holds("t", prints, found)
    assert not cache.holds("other", prints, found)
    # The same prefix remembered on another conversation: not what was found.
    cache.remember("t", prints, "h2", Conversation("t", "c2", None, 0, 2, 1, {}, 0.0), path)
    assert not cache.holds("t", prints, found)
    again = cache.longest("t", prints)
    assert again is not None and cache.holds("t", prints, again)
    # Evicted by newer entries.
    for text in ("b", "c"):
        cache.remember("t", fingerprint_all([user(text)]), "h", conv, path)
    assert not cache.holds("t", prints, again)


# --- the version read, shared by the requests under way ------------------------------


class CountingStore:
    def __init__(self, version: int, waits: bool = False) -> None:
        self.version = version
        self.waits = waits
        self.reads_wait = waits  # as PostgreSQL's, a round trip: shared when it waits
        self.reads = 0
        self.answer = asyncio.Event()  # a read answers once set (when it waits)
        self.fails = False

    async def conversation_version(self, tenant: str, conv_id: str) -> int | None:
        self.reads += 1
        if self.waits:
            await self.answer.wait()  # as a read sent to a thread, or over the network
        if self.fails:
            raise StoreError("the store is down")
        return self.version


def placed_turn(store: CountingStore, repeat: Repeat, cache: PrefixCache) -> SameTurn:
    state: Any = SimpleNamespace(store=store, repeats=Repeats(), prefix_cache=cache)
    return SameTurn(state, None, {"messages": QUESTION}, "t", repeat,  # type: ignore[arg-type]
                    repeat.remembered.conv_id)


async def taken(turn: SameTurn, answer: dict[str, Any]) -> str | None:
    """Where `turn` names `answer` by its repeat's placed answer, or None."""
    placed = turn._placed_before(answer)
    return placed.conv_id if placed is not None and await turn._still_so(placed) else None


def placed_on(version: int) -> tuple[Repeat, PrefixCache]:
    """A repeat whose answer was placed on c9 at `version`, the row the cache holds."""
    row = a_row("c9", version)
    cache = PrefixCache()
    cache.saw(row, root_path("t", "c9"))
    repeat = a_repeat()
    repeat.placed = PlacedAnswer(dict(ANSWER), row)
    return repeat, cache


async def test_a_read_serves_the_requests_that_began_before_it() -> None:
    store = CountingStore(version=3)
    repeat, cache = placed_on(version=3)
    # Three requests under way, their answers placed together: one read serves them all.
    turns = [placed_turn(store, repeat, cache) for _ in range(3)]
    named = await asyncio.gather(*(turn.place(dict(ANSWER)) for turn in turns))
    assert named == ["c9"] * 3
    assert store.reads == 1
    # A request begun after that read reads again, though nothing waited in between (an
    # in-process client and store: the whole request in one step of the loop).
    later = placed_turn(store, repeat, cache)
    assert await taken(later, dict(ANSWER)) == "c9"
    assert store.reads == 2
    # The conversation moved on: not named, and the placed answer is forgotten.
    store.version = 4
    assert await taken(placed_turn(store, repeat, cache), dict(ANSWER)) is None
    assert store.reads == 3 and repeat.placed is None and repeat.checked is None
    # Another answer is not the one placed: no read.
    repeat, cache = placed_on(version=4)
    other = {"role": "assistant", "content": "Lyon."}
    assert await taken(placed_turn(store, repeat, cache), other) is None
    assert store.reads == 3


async def test_a_placed_answer_is_not_taken_once_its_row_was_seen_again() -> None:
    """Another row of the conversation seen since (a turn stored, or the conversation made
    anew under the same id after a deletion, at the same version even): the placed answer
    is checked again the long way, not by the version alone. No store read is made."""
    store = CountingStore(version=3)
    repeat, cache = placed_on(version=3)
    cache.saw(Conversation("t", "c9", None, 0, 2, 3, {"hash": "other"}, 0.0),
              root_path("t", "c9"))
    turn = placed_turn(store, repeat, cache)
    assert await taken(turn, dict(ANSWER)) is None
    empty = PrefixCache()  # the row evicted
    assert await taken(placed_turn(store, repeat, empty), dict(ANSWER)) is None
    assert store.reads == 0


@pytest.fixture
def served_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other requests in flight (the access middleware's count): a read that waits is
    made to be shared (served alone, a request reads for itself, no task made)."""
    monkeypatch.setattr(SERVING, "requests", 4)


async def placing_at_once(
    store: CountingStore, repeat: Repeat, cache: PrefixCache, count: int
) -> list[asyncio.Future[str | None]]:
    """`count` requests begun, their answers being placed at once (their reads asked)."""
    turns = [placed_turn(store, repeat, cache) for _ in range(count)]
    placing = [asyncio.ensure_future(taken(turn, dict(ANSWER))) for turn in turns]
    await asyncio.sleep(0.01)
    return placing


@pytest.mark.usefixtures("served_together")
async def test_a_read_that_does_not_wait_is_made_by_each_request_itself() -> None:
    # SQLite's, on the event loop's connection: a task would answer a loop iteration later.
    store = CountingStore(version=3, waits=True)
    store.reads_wait = False
    repeat, cache = placed_on(version=3)
    placing = await placing_at_once(store, repeat, cache, 2)
    store.answer.set()
    assert await asyncio.gather(*placing) == ["c9"] * 2
    assert store.reads == 2 and repeat.reading is None


@pytest.mark.usefixtures("served_together")
async def test_a_read_under_way_serves_the_requests_that_began_before_it_was_asked() -> None:
    store = CountingStore(version=3, waits=True)
    repeat, cache = placed_on(version=3)
    # Three requests begun, placed at once: the first asks, the others await its read.
    placing = await placing_at_once(store, repeat, cache, 3)
    # One begun after that read was asked asks its own.
    later = asyncio.ensure_future(taken(placed_turn(store, repeat, cache), dict(ANSWER)))
    await asyncio.sleep(0.01)
    assert store.reads == 2
    store.answer.set()
    assert await asyncio.gather(*placing, later) == ["c9"] * 4
    assert store.reads == 2


@pytest.mark.usefixtures("served_together")
async def test_a_read_that_failed_is_not_shared_with_later_requests() -> None:
    store = CountingStore(version=3, waits=True)
    store.fails = True
    repeat, cache = placed_on(version=3)
    placing = await placing_at_once(store, repeat, cache, 2)
    store.answer.set()
    outcomes = await asyncio.gather(*placing, return_exceptions=True)
    assert [type(o) for o in outcomes] == [StoreError, StoreError]  # each, from one read
    assert store.reads == 1 and repeat.reading is None
    store.fails = False
    again = placed_turn(store, repeat, cache)
    assert await taken(again, dict(ANSWER)) == "c9"
    assert store.reads == 2


# --- through the proxy -----------------------------------------------------------------


def app_state(proxy: Any) -> AppState:
    state = proxy.app.state
    assert isinstance(state, AppState)
    return state


async def test_a_repeat_is_decided_again_once_the_prefix_cache_lost_its_entry(
    decided: list[int],
) -> None:
    async with serve(reply, vm_settings()) as proxy:
        body = {"model": "gpt-4o", "messages": QUESTION}
        first = await proxy.raw_chat(body)
        await proxy.raw_chat(body)
        state = app_state(proxy)
        state.prefix_cache = PrefixCache()  # as after the entries were evicted
        again = await proxy.raw_chat(body)
        assert len(decided) == 3
        # Placed the general way: the store finds the history and its answer.
        named = again.headers["x-vm-session"]
        answer = first.json()["choices"][0]["message"]["content"]
        assert await held(proxy.store, proxy.tenant, named) == [QUESTION[0]["content"], answer]


async def test_a_repeat_with_another_answer_goes_on_a_fork_and_is_remembered_there(
    decided: list[int],
) -> None:
    answers = iter(["Paris.", "Paris.", "It is Paris.", "It is Paris.", "Paris."])

    def varied(request: httpx.Request) -> httpx.Response:
        body = reply(request).json()
        body["choices"][0]["message"]["content"] = next(answers)
        return httpx.Response(200, json=body)

    async with serve(varied, vm_settings()) as proxy:
        body = {"model": "gpt-4o", "messages": QUESTION}
        names = [(await proxy.raw_chat(body)).headers["x-vm-session"] for _ in range(5)]
        assert names[1] == names[0] and names[4] == names[0]
        assert names[3] == names[2] != names[0]
        for name, text in zip(names, ["Paris.", "Paris.", "It is Paris.", "It is Paris.",
                                      "Paris."], strict=True):
            assert await held(proxy.store, proxy.tenant, name) == [QUESTION[0]["content"], text]
        assert len(decided) == 2
        infos = await proxy.store.list_conversations(tenant=proxy.tenant, limit=100)
        assert len(infos) == 2


def scripted(answers: list[str]) -> Any:
    """An upstream giving `answers` in turn."""
    given = iter(answers)

    def model(request: httpx.Request) -> httpx.Response:
        body = reply(request).json()
        body["choices"][0]["message"]["content"] = next(given)
        return httpx.Response(200, json=body)

    return model


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.parametrize("made_anew_by", ["another answer", "a longer chat"])
async def test_a_placed_answer_is_not_named_once_its_chat_was_deleted_and_made_anew(
    backend: str, made_anew_by: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: the chat holding the answer is deleted (`vm-proxy gc`), and the
    same chat is made anew under the same id (a new chat's id comes from its first
    message), at the same version, holding something else. The same request and answer
    again must not be named there."""
    store = await kept_open(store_url(backend, tmp_path), monkeypatch)
    anew = "Lyon." if made_anew_by == "another answer" else "Far."
    async with serve(scripted(["Paris.", "Paris.", anew, "Paris."]), vm_settings(),
                     store) as proxy:
        body = {"model": "gpt-4o", "messages": QUESTION}
        chat = (await proxy.raw_chat(body)).headers["x-vm-session"]
        assert (await proxy.raw_chat(body)).headers["x-vm-session"] == chat
        assert await store.gc(time.time() + 3600) >= 1
        if made_anew_by == "another answer":
            made = await proxy.raw_chat(body)
        else:
            longer = [*QUESTION, {"role": "assistant", "content": "Paris."}, user("How far?")]
            made = await proxy.raw_chat({"model": "gpt-4o", "messages": longer})
        assert made.headers["x-vm-session"] == chat  # the same id, made anew
        again = await proxy.raw_chat(body)
        assert again.status_code == 200
        named = again.headers["x-vm-session"]
        assert await held(store, proxy.tenant, named) == [QUESTION[0]["content"], "Paris."]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_a_placed_answer_is_read_again_after_a_session_turn_went_on_from_it(
    backend: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: requests sent one after the other in process (the memory store
    and this upstream answer without waiting, so a whole request is one step of the loop)
    took a version read of an earlier request for theirs, after a turn sent under
    `X-VM-Session` (which the prefix cache is not told of) had gone on from the answer."""
    store = await kept_open(store_url(backend, tmp_path), monkeypatch)
    async with serve(scripted(["Madrid."] * 5), vm_settings(), store) as proxy:
        body = {"model": "gpt-4o", "messages": [user("Why?")]}
        for _ in range(3):
            chat = (await proxy.raw_chat(body)).headers["x-vm-session"]
        went_on = await proxy.raw_chat(
            {"model": "gpt-4o", "messages": [user("And of Spain?")]},
            headers={"x-vm-session": chat},
        )
        assert went_on.status_code == 200
        assert len(await held(store, proxy.tenant, chat)) == 4
        again = await proxy.raw_chat(body)
        named = again.headers["x-vm-session"]
        assert named != chat
        assert await held(store, proxy.tenant, named) == ["Why?", "Madrid."]
