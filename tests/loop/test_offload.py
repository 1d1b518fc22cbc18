"""Huge inputs are hashed and analysed off the event loop (issue 13)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from proxy.loop import offload, storing
from proxy.loop.storing import OFF_LOOP_CHARS, Ingester
from proxy.store import open_store
from proxy.store.base import Path, PathSpan
from proxy.tokens import counter_for_model
from proxy.vm.identity import chain_hashes


async def test_huge_messages_are_hashed_in_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[int] = []

    def spy(tenant: str, messages: Any, *, prev: str | None = None) -> list[str]:
        threads.append(threading.get_ident())
        return chain_hashes(tenant, messages, prev=prev)

    monkeypatch.setattr(offload, "chain_hashes", spy)
    small = [{"role": "user", "content": "hello"}]
    huge = [{"role": "user", "content": "a" * (offload.HASH_OFF_LOOP_CHARS + 1)}]
    assert await offload.hashed("t", small) == chain_hashes("t", small)
    assert await offload.hashed("t", huge) == chain_hashes("t", huge)
    assert threads[0] == threading.get_ident()
    assert threads[1] != threading.get_ident()


async def test_huge_messages_become_pages_in_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[int] = []
    real = storing.ingest_messages

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(storing, "ingest_messages", spy)
    store = await open_store("memory://")
    ingester = Ingester(lambda: counter_for_model("gpt-4o-mini"), 8)
    messages = [
        {"role": "user", "content": "short"},
        {"role": "assistant", "content": "b" * (OFF_LOOP_CHARS + 1)},
    ]
    try:
        made = await ingester.ingest(
            store, "t", Path("t", (PathSpan("c", 0, None),)), 0, messages,
            chain_hashes("t", messages), {},
        )
    finally:
        await store.close()
    assert [p.page_id for p in made.pages if p.is_message] == ["msg_0", "msg_1"]
    assert threads[0] == threading.get_ident()
    assert threads[1] != threading.get_ident()
