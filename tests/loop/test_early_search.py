"""The prefetch search started with the question's append (proxy.loop.early_search): taken
when the turn searches what it searched, dropped otherwise, and never left running."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping
from typing import Any

import pytest

from proxy.loop.early_search import EarlySearch
from proxy.store.base import Path, PathSpan, SearchHit, StoreError
from proxy.store.memory import MemoryStore
from tests.loop.harness import MODEL, serve, vm_settings
from tests.loop.history import conversation
from tests.loop.scripted import ScriptedModel, agent
from tests.store.conftest import make_page

T = "tenant-a"


class Searches(MemoryStore):
    """A memory store that records its searches and can be told to fail them."""

    def __init__(self) -> None:
        super().__init__()
        self.searched: list[tuple[Path, str, int]] = []
        self.fail = False

    async def search(self, path: Path, query: str, **options: Any) -> list[SearchHit]:
        self.searched.append((path, query, options["limit"]))
        await asyncio.sleep(0)  # a store answers later, not within the call
        if self.fail:
            raise StoreError("the store is down")
        return await super().search(path, query, **options)


async def _store() -> tuple[Searches, Path]:
    store = Searches()
    await store.create_conversation(T, "c")
    await store.append(T, "c", [make_page(n, f"page {n} about trams") for n in range(4)],
                       expected_version=0, new_length=4)
    return store, await store.path(T, "c")


def _always(state: Mapping[str, Any]) -> bool:
    return True


async def test_the_turn_takes_the_search_started_with_the_append() -> None:
    store, path = await _store()
    early = EarlySearch(store, lambda: "trams", lambda state: 3, _always)
    early.appending(path, {"tokens": 9000})
    await asyncio.sleep(0)
    assert store.searched == [(path, "trams", 3)]  # under way before the turn asks
    hits = await early.hits(path, "trams", 3)
    assert len(hits) == 3 and store.searched == [(path, "trams", 3)]  # not searched again


@pytest.mark.parametrize("asked", [
    ("other words", 3),  # the turn planned another query
    ("trams", 5),  # or another number of hits
])
async def test_a_search_of_other_arguments_is_dropped_and_run_again(
    asked: tuple[str, int],
) -> None:
    store, path = await _store()
    early = EarlySearch(store, lambda: "trams", lambda state: 3, _always)
    early.appending(path, {})
    query, limit = asked
    await early.hits(path, query, limit)
    assert store.searched[-1] == (path, query, limit)


async def test_a_search_on_another_path_is_dropped() -> None:
    store, path = await _store()
    early = EarlySearch(store, lambda: "trams", lambda state: 3, _always)
    shorter = Path(T, (PathSpan("c", 0, 2),))  # a fork or cut the placement ended on
    early.appending(path, {})
    hits = await early.hits(shorter, "trams", 3)
    assert store.searched[-1] == (shorter, "trams", 3)
    assert {hit.page.page_id for hit in hits} <= {"msg_0", "msg_1"}


async def test_a_retried_append_starts_the_search_again_on_its_path() -> None:
    store, path = await _store()
    early = EarlySearch(store, lambda: "trams", lambda state: 3, _always)
    first = Path(T, (PathSpan("c", 0, 3),))
    early.appending(first, {})
    await asyncio.sleep(0)  # under way when the append is refused and retried
    early.appending(path, {})
    await early.hits(path, "trams", 3)
    assert [searched[0] for searched in store.searched] == [first, path]


async def test_no_search_when_the_turn_will_not_need_one() -> None:
    store, path = await _store()
    made: list[str] = []

    def query() -> str:
        made.append("trams")
        return "trams"

    early = EarlySearch(
        store, query, lambda state: 3, lambda state: int(state["tokens"]) > 1000
    )
    early.appending(path, {"tokens": 10})
    assert made == []  # nor is the query made (it tokenizes the message)
    assert (await early.hits(path, "", 3)) == []  # no query: no search at all
    assert store.searched == []
    EarlySearch(store, lambda: "", lambda state: 3, _always).appending(path, {"tokens": 5000})
    await asyncio.sleep(0)
    assert store.searched == []


async def test_a_search_not_taken_is_cancelled_and_its_failure_is_nobodys() -> None:
    store, path = await _store()
    store.fail = True
    unhandled: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    try:
        early = EarlySearch(store, lambda: "trams", lambda state: 3, _always)
        early.appending(path, {})
        for _ in range(3):
            await asyncio.sleep(0)  # the search has run, and failed, ...
        early.cancel()  # ... when the turn turns out not to need it
        await asyncio.sleep(0.01)
        early.cancel()  # twice is harmless
        del early
        gc.collect()  # where asyncio reports a task's error nobody retrieved
    finally:
        loop.set_exception_handler(None)
    assert unhandled == []


async def test_a_taken_search_that_failed_fails_the_turn() -> None:
    store, path = await _store()
    store.fail = True
    early = EarlySearch(store, lambda: "trams", lambda state: 3, _always)
    early.appending(path, {})
    with pytest.raises(StoreError):
        await early.hits(path, "trams", 3)


class Timeline(MemoryStore):
    """A memory store whose appends take a few event-loop turns, as a real store's do, and
    which notes when appends and searches begin and end."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        self.events.append("append")
        for _ in range(3):
            await asyncio.sleep(0)
        conv = await super().append(*args, **kwargs)
        self.events.append("appended")
        return conv

    async def search(self, *args: Any, **kwargs: Any) -> Any:
        self.events.append("search")
        return await super().search(*args, **kwargs)


async def test_a_vm_turn_searches_once_while_its_question_is_being_stored() -> None:
    store = Timeline()
    history = conversation(120)
    model = ScriptedModel(agent())  # answers "Noted": no search of its own
    async with serve(model, vm_settings(), store) as proxy:
        for question in ("what about the trams at night?", "and the buses?"):
            store.events.clear()
            raw = await proxy.client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[*history, {"role": "user", "content": question}]
            )
            # Memory was needed: a VM turn, not the history forwarded whole.
            sent, full = (int(raw.headers[f"x-vm-prompt-tokens{k}"]) for k in ("", "-full"))
            assert sent < full
            history += [{"role": "user", "content": question},
                        {"role": "assistant", "content": raw.parse().choices[0].message.content}]
            # Placing the question, the prefetch search begun before that append is done,
            # then the answer stored: one search, and no round trip of its own.
            assert store.events == ["append", "search", "appended", "append", "appended"]
