"""One huge message costs bounded work per step: its terms come from its analysed part,
and what is hashed of it is fed in slices, with the same result (issue 13)."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest

from proxy.loop import offload, prefix_cache, prepare
from proxy.loop.held import held_write, root_path
from proxy.loop.prefix_cache import (
    LONG_TEXT_CHARS,
    fingerprint,
    fingerprint_all,
    short_fingerprints,
)
from proxy.loop.storing import OFF_LOOP_CHARS
from proxy.store.base import Conversation
from proxy.vm.bm25 import search_tokens
from proxy.vm.bounds import INDEX_CHARS
from tests.loop.harness import MODEL, serve, vm_settings
from tests.loop.history import LOCKER
from tests.loop.scripted import ScriptedModel, agent


async def test_the_latest_message_terms_come_from_its_analysed_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    analysed: list[str] = []

    def spy(text: str) -> list[str]:
        analysed.append(text)
        return search_tokens(text)

    monkeypatch.setattr(prepare, "search_tokens", spy)
    huge = "where is the locker " * (INDEX_CHARS // 10)
    model = ScriptedModel(agent(LOCKER))
    async with serve(model, vm_settings(context_budget=8000, activate_above=0)) as proxy:
        for text in ("Hello", huge + " zebra"):
            await proxy.client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": text}],
                extra_headers={"X-VM-Session": "huge"})
    assert analysed[0] == "Hello"
    assert analysed[-1] == huge[:INDEX_CHARS]


def _long(tail: str = "") -> str:
    return "é" * (LONG_TEXT_CHARS + 7) + tail


def test_a_long_text_is_fingerprinted_by_a_digest_fed_in_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fed: list[int] = []
    real = hashlib.blake2b

    class Counting:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self._h = real(*args, **kwargs)  # type: ignore[arg-type]

        def update(self, data: bytes) -> None:
            fed.append(len(data))
            self._h.update(data)

        def digest(self) -> bytes:
            return self._h.digest()

    monkeypatch.setattr(prefix_cache.hashlib, "blake2b", Counting)
    text = _long()
    message = {"role": "user", "content": text}
    # Equal texts (distinct objects) fingerprint alike, on both paths.
    same = fingerprint_all([{"role": "user", "content": text[:-1] + "é"}])
    assert fingerprint_all([message]) == same == [fingerprint(message)]
    assert sum(fed) == 3 * len(text.encode())  # all of it, by each of the three
    assert max(fed) < len(text)  # sliced, never the whole text at once


def test_a_long_text_fingerprint_tells_texts_and_roles_apart() -> None:
    user = {"role": "user", "content": _long("a")}
    other = {"role": "user", "content": _long("b")}
    assistant = {"role": "assistant", "content": _long("a")}
    named = {"role": "user", "content": _long("a"), "name": "x"}
    prints = fingerprint_all([user, other, assistant, named])
    assert len(set(prints)) == 4
    assert fingerprint_all([user]) == [fingerprint(user)]
    short = {"role": "user", "content": "hello"}
    # A short text keeps Python's own hash (what every resent history costs).
    assert fingerprint_all([short]) == [hash(("user", "hello", None, None, None))]


def test_a_long_text_among_other_messages_is_left_for_the_worker_thread() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    plain = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    tool_call = {"role": "assistant", "content": None, "tool_calls": [call]}
    long_plain = {"role": "user", "content": _long()}
    long_other = {"role": "assistant", "content": _long(), "vm_items": [{"id": "msg_1"}]}
    assert short_fingerprints([*plain, tool_call]) == [
        fingerprint(m) for m in [*plain, tool_call]]
    assert short_fingerprints([*plain, tool_call, long_plain]) is None
    assert short_fingerprints([*plain, long_other, *plain]) is None
    everything = [*plain, long_other, tool_call, long_plain]
    assert fingerprint_all(everything) == [fingerprint(m) for m in everything]


async def test_a_history_with_a_long_text_is_fingerprinted_in_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[int] = []

    def spy(messages: list[dict[str, str]]) -> list[int]:
        threads.append(threading.get_ident())
        return fingerprint_all(messages)

    monkeypatch.setattr(offload, "fingerprint_all", spy)
    small = [{"role": "user", "content": "hello"}, {"role": "user", "content": ["x"]}]
    huge = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _long()}]
    assert await offload.fingerprinted(small) == fingerprint_all(small)
    assert threads == []  # on the loop, no thread hop
    assert await offload.fingerprinted(huge) == fingerprint_all(huge)
    assert len(threads) == 1 and threads[0] != threading.get_ident()
    # Whatever the shape of the history, a long text is not digested on the loop.
    named = [{"role": "user", "content": _long(), "name": "x"}]
    assert short_fingerprints(huge) is None and short_fingerprints(named) is None
    assert short_fingerprints(small) == fingerprint_all(small)


async def test_a_huge_message_held_for_its_answer_is_counted_in_a_worker_thread() -> None:
    threads: list[int] = []

    def lean_tokens(messages: Any, before: Any) -> int:
        threads.append(threading.get_ident())
        return 10

    row = Conversation("t", "c", None, 0, 1, 1, {}, 0.0)
    path = root_path("t", "c")
    for text in ("short", "b" * (OFF_LOOP_CHARS + 1)):
        held = await held_write(lean_tokens, 100, row, path, 0,
                                [{"role": "user", "content": text}], ["h1"], {})
        assert held is not None and held.state["tokens"] == 10
    assert threads[0] == threading.get_ident()
    assert threads[1] != threading.get_ident()
