"""What a memory-active turn spares itself: work whose result it would not use."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.loop import storing
from proxy.loop.prefix_cache import fingerprint, fingerprint_all
from proxy.loop.storing import Ingester
from proxy.store import memory, open_store, sqlite
from proxy.store.base import Path, PathSpan
from proxy.tokens import counter_for_model
from proxy.vm.identity import chain_hashes
from proxy.vm.ingest import Counters, ingest_messages


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


async def test_an_append_does_not_decode_the_state_it_wrote(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[object] = []
    real = sqlite.decode_state

    def spy(raw: Any) -> dict[str, Any]:
        decoded.append(raw)
        return real(raw)

    store = await open_store(f"sqlite:///{tmp_path}/t.db", cache_pages=0)
    conv = await store.create_conversation("t", "c")
    messages = [{"role": "user", "content": "hi"}]
    pages = ingest_messages(messages, first_position=0, counters=Counters(),
                            counter=counter_for_model("gpt-4o"), segment_turns=8).pages
    monkeypatch.setattr(sqlite, "decode_state", spy)
    try:
        row = await store.append("t", "c", pages, expected_version=conv.version,
                                 new_length=1, state={"tokens": 3}, durable=False)
        await store.append("t", "c", [], expected_version=row.version, new_length=1,
                           state={"tokens": 4}, durable=True)
        after = await store.get_conversation("t", "c")
    finally:
        await store.close()
    assert row.state == {"tokens": 3}
    assert after is not None and after.state == {"tokens": 4}
    assert decoded == []  # neither append decodes back the state it was given


async def test_the_memory_store_does_not_decode_the_state_an_append_wrote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[object] = []
    real = memory.decode_state

    def spy(raw: Any) -> dict[str, Any]:
        decoded.append(raw)
        return real(raw)

    store = await open_store("memory://", cache_pages=0)
    conv = await store.create_conversation("t", "c")
    messages = [{"role": "user", "content": "hi"}]
    pages = ingest_messages(messages, first_position=0, counters=Counters(),
                            counter=counter_for_model("gpt-4o"), segment_turns=8).pages
    state = {"tokens": 3, "table": {"msg_0": [1, 2]}}
    monkeypatch.setattr(memory, "decode_state", spy)
    row = await store.append("t", "c", pages, expected_version=conv.version, new_length=1,
                             state=state)
    updated = await store.update_state("t", "c", expected_version=row.version,
                                       state={"tokens": 4})
    assert decoded == []  # neither write decodes back the state it was given
    state["tokens"] = 5  # the caller's dict is not the row's
    assert row.state == {"tokens": 3, "table": {"msg_0": [1, 2]}}
    assert updated.state == {"tokens": 4}
    after = await store.get_conversation("t", "c")
    assert after is not None and after.state == {"tokens": 4}
    await store.close()


def test_fingerprints_of_a_plain_history_are_each_message_s_fingerprint() -> None:
    plain = [{"role": "user" if i % 2 else "assistant", "content": f"turn {i}"} for i in range(9)]
    assert fingerprint_all(plain) == [fingerprint(m) for m in plain]
    odd = [{"role": "user", "name": "maya"}, {"content": "hi", "name": "x"}]
    assert fingerprint_all(odd) == [fingerprint(m) for m in odd]
    # An answer sent back as the API gave it: a field the fingerprint does not take.
    answered = [*plain, {"role": "assistant", "content": "ok", "refusal": None}]
    assert fingerprint_all(answered) == [fingerprint(m) for m in answered]
    assert fingerprint_all(answered)[-1] == fingerprint({"role": "assistant", "content": "ok"})
    named = [*answered, {"role": "user", "content": "hi", "name": "maya"}]
    assert fingerprint_all(named) == [fingerprint(m) for m in named]
    assert fingerprint_all(named)[-1] != fingerprint({"role": "user", "content": "hi"})
    assert fingerprint_all([]) == []


def test_fingerprints_of_a_plain_history_with_a_few_other_messages() -> None:
    # Plain messages among tool calls, named messages and carried Responses items: each
    # message still gets its own fingerprint, at its own place.
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    others: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
        {"role": "assistant", "content": "Noted.", "vm_items": [{"id": "msg_1"}]},
        {"role": "user", "content": "hi", "name": "maya"},
        {"role": "user"},
    ]
    history: list[dict[str, Any]] = []
    for i, other in enumerate(others * 3):
        history += [{"role": "user", "content": f"q {i}"}, other,
                    {"role": "assistant", "content": f"a {i}"}]
    assert fingerprint_all(history) == [fingerprint(m) for m in history]
    # Carried items are not part of a message's identity.
    assert fingerprint_all(history)[7] == fingerprint({"role": "assistant", "content": "Noted."})
    # Two plain fields that are not role and content: every message on its own.
    odd_pair = [*history, {"role": "user", "name": "x"}]
    assert fingerprint_all(odd_pair) == [fingerprint(m) for m in odd_pair]


_ODD = st.one_of(st.none(), st.sampled_from(["", "c1", "5"]), st.just(5), st.just([]),
                 st.just(["c1"]), st.just({"id": "c1"}))


@given(st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "tool"]),
     "content": st.sampled_from(["", "hi", None])},
    optional={"tool_call_id": _ODD, "name": _ODD}), min_size=2, max_size=2))
def test_a_fingerprint_takes_any_message_validation_lets_through(
    pair: list[dict[str, Any]]
) -> None:
    # A call id or name of any JSON type on a message that takes none (validation does
    # not look there) was a TypeError from `hash`, a 500 (found by tests/http/test_fuzz.py).
    first, second = (fingerprint(m) for m in pair)
    if first == second:  # what the prefix cache relies on: the same chain hash
        assert chain_hashes("t", pair[:1]) == chain_hashes("t", pair[1:])
