"""A Responses request's input made chat messages with their fingerprints (responses_input):
the fingerprints are each message's own, as prefix_cache.fingerprint makes them, whatever
mix of plain messages and other items the input holds."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from proxy.loop.prefix_cache import (
    LONG_TEXT_CHARS,
    Fingerprinted,
    fingerprint,
    fingerprint_all,
    short_fingerprints,
)
from proxy.loop.responses_input import (
    _items_to_messages,
    _scan,
    _walk,
    check_input_items,
    input_messages,
)
from proxy.upstream.responses_format import INSTRUCTIONS
from tests.support.resent_items import PLAIN_MESSAGES, other_items

SAID = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": "Noted.", "annotations": []}]}
CALL = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f",
        "arguments": "{}"}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"}
REASONING = {"id": "rs_1", "type": "reasoning", "summary": []}

_OTHER = other_items(SAID, CALL, OUTPUT, REASONING,
                     {"role": "user", "content": [{"type": "input_text", "text": "a"}]})


def own_fingerprints(messages: list[dict[str, Any]]) -> list[int]:
    return [fingerprint(m) for m in messages]


@given(st.lists(PLAIN_MESSAGES | _OTHER, max_size=12),
       st.sampled_from([None, "Be brief.", [SAID]]))
def test_the_fingerprints_are_each_message_s(items: list[Any], instructions: Any) -> None:
    messages = input_messages(instructions, items)
    assert isinstance(messages, Fingerprinted)
    assert messages.fingerprints == own_fingerprints(list(messages))
    # What placing them reads (proxy.loop.offload.fingerprinted) is those.
    assert short_fingerprints(messages) == fingerprint_all(list(messages))


def test_a_string_input_is_fingerprinted_too() -> None:
    messages = input_messages("Be brief.", "hi")
    assert messages == [{"role": "system", "content": "Be brief.", INSTRUCTIONS: True},
                        {"role": "user", "content": "hi"}]
    assert isinstance(messages, Fingerprinted)
    assert messages.fingerprints == own_fingerprints(list(messages))


def test_a_long_text_is_left_to_the_worker_thread() -> None:
    # A text too long to hash on the event loop (issue 13): no fingerprints are made here,
    # so that placing the messages digests it in a worker thread as for any request.
    long = "x" * (LONG_TEXT_CHARS + 1)
    for items in ([{"role": "user", "content": long}, SAID],
                  [{"role": "user", "content": "hi"}, {**SAID, "content": [
                      {"type": "output_text", "text": long, "annotations": []}]}]):
        messages = input_messages(None, items)
        assert not isinstance(messages, Fingerprinted)
        assert short_fingerprints(messages) is None
        assert messages == input_messages(None, [*items])  # the same messages either way
    assert not isinstance(input_messages(long, "hi"), Fingerprinted)
    assert not isinstance(input_messages(None, long), Fingerprinted)


def test_fingerprints_that_no_longer_match_the_messages_are_not_taken() -> None:
    messages = input_messages(None, [{"role": "user", "content": "hi"}, SAID])
    assert isinstance(messages, Fingerprinted)
    messages.append({"role": "user", "content": "more"})
    assert fingerprint_all(messages) == own_fingerprints(list(messages))


# Mostly what a client resends (plain messages and answers as given), so that the fast
# path (_plain_and_said) takes many of them and _walk the rest.
_RESENT = st.lists(PLAIN_MESSAGES | st.sampled_from([SAID, {**SAID, "id": "msg_2"}]) | _OTHER,
                   max_size=12)
_HEADS = st.sampled_from([[], [{"role": "system", "content": "Be brief."}]])


@given(_RESENT, _HEADS)
def test_a_resent_history_is_made_as_item_by_item(items: list[Any], head: list[Any]) -> None:
    messages = _items_to_messages(items, "input", None, list(head))
    walked = _walk(items, _scan(items), "input", None, list(head))
    assert messages == walked
    assert type(messages) is type(walked)
    if isinstance(messages, Fingerprinted):
        assert messages.fingerprints == walked.fingerprints  # type: ignore[attr-defined]


def test_the_history_a_client_resends_takes_the_fast_path() -> None:
    # Plain messages and answers as given, alternating: no item goes item by item.
    items = [{"role": "user", "content": "hi"}, SAID, {"role": "user", "content": "more"},
             {**SAID, "id": "msg_2"}]
    calls: list[int] = []
    messages = input_messages(None, items, lambda where, index, item: calls.append(index))
    assert calls == []
    assert messages[1] == {"role": "assistant", "content": "Noted.", "vm_items": [SAID]}
    # The item itself, not a copy: only the fast path carries it so (_walk copies).
    assert messages[1]["vm_items"][0] is items[1]
    assert messages[3]["vm_items"][0] is items[3]
    assert messages.fingerprints == own_fingerprints(list(messages))  # type: ignore[attr-defined]


@given(_RESENT, st.sampled_from([None, "Be brief.", [SAID], [CALL, {"role": "user"}]]))
def test_checking_alone_checks_what_making_the_messages_checks(
    items: list[Any], instructions: Any
) -> None:
    # The same items, in the same order, are given to the request's check: what refuses
    # a request with memory refuses it in mode off (check_input_items) too.
    made: list[tuple[str, int]] = []
    checked: list[tuple[str, int]] = []
    input_messages(instructions, items, lambda where, index, item: made.append((where, index)))
    check_input_items(instructions, items,
                      lambda where, index, item: checked.append((where, index)))
    assert checked == made
