"""Placing requests in the store (proxy.loop.conversations): the round trips a turn makes, and
what a stale remembered row, a concurrent request, another replica or gc do to them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path as FsPath
from typing import Any

import pytest

from proxy.loop.conversations import Conversations
from proxy.loop.placement import Placement
from proxy.loop.prefix_cache import PrefixCache
from proxy.loop.stored_rows import branch_path
from proxy.loop.storing import Ingester
from proxy.store import open_store
from proxy.store.base import PageStore, Path
from proxy.tokens import counter_for_model

T = "tenant-a"
Message = dict[str, Any]


class Recording:
    """A store that records the name of every call made through it."""

    def __init__(self, inner: PageStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name == "lock" or not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await attr(*args, **kwargs)

        return call

    def taken(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


def replica(store: Any, prefixes: PrefixCache | None = None) -> Conversations:
    """The Conversations of one request, on a process with these remembered prefixes."""
    ingester = Ingester(lambda: counter_for_model("gpt-4o"), segment_turns=8)
    cache = PrefixCache() if prefixes is None else prefixes
    return Conversations(store, ingester.ingest, ingester.state_at, cache)


def history(turns: int) -> list[Message]:
    messages: list[Message] = [{"role": "system", "content": "Be brief."}]
    for n in range(turns):
        messages += [{"role": "user", "content": f"question {n} about trams"},
                     {"role": "assistant", "content": f"answer {n}: trams run at night"}]
    return messages


async def turn(
    conversations: Conversations, messages: list[Message], answer: str
) -> Placement:
    """One request of a chat client resending its history: place it, store the answer."""
    placed = await conversations.place(T, messages, None)
    await conversations.extend(T, placed, [{"role": "assistant", "content": answer}])
    return placed


async def stored_texts(store: PageStore, placement: Placement) -> list[str]:
    conv = await store.get_conversation(T, placement.leaf.conv_id)
    assert conv is not None
    path = await store.path(T, conv.conv_id)
    return [str(p.message["content"] if p.message else "")
            for p in await store.pages_in_range(path, 0, conv.length + 10)]


@pytest.fixture(params=["memory", "sqlite", "cached-sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: FsPath) -> AsyncIterator[PageStore]:
    urls = {"memory": ("memory://", 0), "sqlite": (f"sqlite:///{tmp_path}/p.db", 0),
            "cached-sqlite": (f"sqlite:///{tmp_path}/p.db", 100)}
    url, cache = urls[request.param]
    opened = await open_store(url, cache_pages=cache)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_resent_turn_costs_one_append_to_place_and_one_to_answer(
    store: PageStore,
) -> None:
    recording = Recording(store)
    conversations = replica(recording)
    messages = [*history(3), {"role": "user", "content": "and buses?"}]
    await turn(conversations, messages, "buses too")
    recording.taken()
    messages = [*messages, {"role": "assistant", "content": "buses too"},
                {"role": "user", "content": "and ferries?"}]
    placed = await conversations.place(T, messages, None)
    assert recording.taken() == ["append"]
    assert (placed.new_count, placed.length, placed.leaf.length) == (1, 10, 10)
    await conversations.extend(T, placed, [{"role": "assistant", "content": "ferries no"}])
    assert recording.taken() == ["append"]
    assert (await stored_texts(store, placed))[-3:] == ["buses too", "and ferries?",
                                                        "ferries no"]


async def test_a_row_another_replica_changed_costs_a_retry_not_a_page(
    store: PageStore,
) -> None:
    one, two = PrefixCache(), PrefixCache()
    messages = [*history(2), {"role": "user", "content": "q1"}]
    await turn(replica(store, one), messages, "a1")
    # The next turn goes to the other replica; then the client comes back to the first,
    # whose remembered row is now two messages short.
    messages += [{"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    await turn(replica(store, two), messages, "a2")
    messages += [{"role": "assistant", "content": "a2"}, {"role": "user", "content": "q3"}]
    recording = Recording(store)
    placed = await turn(replica(recording, one), messages, "a3")
    # Straight to an append on the remembered row, refused; then read, found a2, stored q3.
    calls = recording.taken()
    assert calls[0] == "append" and calls.count("append") == 3
    assert placed.new_count == 1 and placed.leaf.length == len(messages)
    texts = await stored_texts(store, placed)
    assert texts == [str(m["content"]) for m in messages] + ["a3"]


async def test_concurrent_turns_on_one_remembered_row_lose_and_double_nothing(
    store: PageStore,
) -> None:
    prefixes = PrefixCache()
    base = [*history(2), {"role": "user", "content": "q1"}]
    first = await turn(replica(store, prefixes), base, "a1")
    base += [{"role": "assistant", "content": "a1"}]

    async def ask(question: str) -> Placement:
        return await turn(replica(store, prefixes), [*base, {"role": "user",
                                                             "content": question}],
                          f"answer to {question}")

    placed = await asyncio.gather(*(ask(f"q2 variant {n}") for n in range(4)))
    leaves = {p.leaf.conv_id for p in placed}
    assert len(leaves) == 4 and first.leaf.conv_id in leaves  # one kept it, three forked
    for n, placement in enumerate(placed):
        texts = await stored_texts(store, placement)
        assert texts == [str(m["content"]) for m in base] + [f"q2 variant {n}",
                                                            f"answer to q2 variant {n}"]
    # The same request once more (a regenerate): nothing new is stored, and its answer goes
    # on a branch of its own, beside the first answer, not after it.
    again = await ask("q2 variant 0")
    assert again.new_count == 0 and again.leaf.conv_id not in leaves
    assert (await stored_texts(store, again)) == [str(m["content"]) for m in base] + [
        "q2 variant 0", "answer to q2 variant 0"]


async def test_a_remembered_conversation_deleted_since_is_started_over(
    store: PageStore,
) -> None:
    prefixes = PrefixCache()
    messages = [*history(2), {"role": "user", "content": "q1"}]
    await turn(replica(store, prefixes), messages, "a1")
    assert await store.gc(older_than=10**12) == 1
    messages += [{"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    placed = await turn(replica(store, prefixes), messages, "a2")
    assert placed.new_count == len(messages)
    assert await stored_texts(store, placed) == [str(m["content"]) for m in messages] + ["a2"]


async def test_a_session_name_is_bound_once(store: PageStore) -> None:
    recording = Recording(store)
    calls: list[list[str]] = []
    messages: list[Message] = []
    for n in range(3):
        conversations = replica(recording)
        new: list[Message] = [{"role": "user", "content": f"question {n}"}]
        placed = await conversations.place(T, new, "my-chat")
        await conversations.extend(T, placed, [{"role": "assistant", "content": f"a{n}"}])
        messages += [*new, {"role": "assistant", "content": f"a{n}"}]
        calls.append(recording.taken())
    assert [c.count("bind_session") for c in calls] == [1, 0, 0]
    assert await stored_texts(store, placed) == [m["content"] for m in messages]




async def test_the_append_hook_is_told_the_placements_path_before_the_append(
    store: PageStore,
) -> None:
    recording = Recording(store)
    told: list[tuple[Path, int]] = []

    def hook(path: Path, state: Mapping[str, Any]) -> None:
        recording.calls.append("hook")
        told.append((path, int(state["tokens"])))

    conversations = replica(recording)
    messages = [*history(3), {"role": "user", "content": "and buses?"}]
    await turn(conversations, messages, "buses too")
    recording.taken()
    # The next turn, then an edit of its question (a fork), then a turn on the fork.
    for question in ("and ferries?", "and trains?"):
        asked = [*messages, {"role": "assistant", "content": "buses too"},
                 {"role": "user", "content": question}]
        placed = await conversations.place(T, asked, None, on_append=hook)
        assert recording.taken()[-2:] == ["hook", "append"]
        assert told[-1] == (placed.path, placed.leaf.state["tokens"])
    assert told[0][0] != told[1][0]  # the fork's path


async def test_a_retried_append_tells_the_hook_again(store: PageStore) -> None:
    one, two = PrefixCache(), PrefixCache()
    messages = [*history(2), {"role": "user", "content": "q1"}]
    await turn(replica(store, one), messages, "a1")
    messages += [{"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    await turn(replica(store, two), messages, "a2")  # the row `one` remembers goes stale
    messages += [{"role": "assistant", "content": "a2"}, {"role": "user", "content": "q3"}]
    told: list[Path] = []
    placed = await replica(store, one).place(
        T, messages, None, on_append=lambda path, state: told.append(path))
    assert len(told) == 2 and told[-1] == placed.path


async def test_a_branch_path_is_the_path_the_store_reads(store: PageStore) -> None:
    """stored_rows.branch_path makes a conversation's path from its row and its parent's
    path, without reading it (a fork created deferred is not stored yet): it is the path
    the store reads once it is."""
    rows = [
        await store.create_conversation(T, "c1"),
        await store.create_conversation(T, "c2", parent_id="c1", fork_at=4),
        await store.create_conversation(T, "c3", parent_id="c2", fork_at=2),  # below c2's fork
        await store.create_conversation(T, "c4", parent_id="c2", fork_at=6),
        await store.create_conversation(T, "c5", parent_id="c4", fork_at=6),  # at c4's fork
        await store.create_conversation(T, "c6", parent_id="c1", fork_at=0),
    ]
    for conv in rows:
        stored = await store.path(T, conv.conv_id)
        assert await branch_path(store, T, conv) == stored
        if conv.parent_id is not None:
            parent = await store.path(T, conv.parent_id)
            assert await branch_path(store, T, conv, parent) == stored
