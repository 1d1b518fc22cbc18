"""What a memory-active turn spares itself: work whose result it would not use."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.loop import storing
from proxy.loop.prefix_cache import fingerprint, fingerprint_all
from proxy.loop.storing import Ingester
from proxy.store import open_store
from proxy.store.base import Path, PathSpan
from proxy.tokens import counter_for_model
from proxy.vm.identity import chain_hashes


def test_fingerprints_of_a_history_are_each_message_s_fingerprint() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "hi", "name": "maya"},
        {"role": "user", "content": "hi", "name": ""},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": None},
    ]  # fmt: skip
    assert fingerprint_all(messages) == [fingerprint(m) for m in messages]
    # A message whose extra fields are empty is the same message (it chain-hashes alike).
    assert fingerprint_all(messages)[1] == fingerprint_all(messages)[3]
    assert fingerprint_all(messages)[7] == fingerprint_all(messages)[8]


async def test_a_history_past_the_lean_limit_makes_no_lean_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[int] = []
    real = storing.lean_ingest

    def spy(first: int, *args: Any, **kwargs: Any) -> Any:
        made.append(first)
        return real(first, *args, **kwargs)

    monkeypatch.setattr(storing, "lean_ingest", spy)
    store = await open_store("memory://")
    ingester = Ingester(lambda: counter_for_model("gpt-4o"), 8, lean_up_to=100)
    path = Path("t", (PathSpan("c", 0, None),))
    messages = [{"role": "user", "content": "a question"}]
    try:
        short = await ingester.ingest(store, "t", path, 0, messages,
                                      chain_hashes("t", messages), {})  # fmt: skip
        long = await ingester.ingest(store, "t", path, 0, messages,
                                     chain_hashes("t", messages), {"tokens": 5000})  # fmt: skip
    finally:
        await store.close()
    assert made == [0]  # the short history only
    assert short.pages[0].extra.get("lean") == 1
    assert long.pages[0].extra.get("lean") is None
