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
from proxy.loop.responses_input import input_messages

SAID = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": "Noted.", "annotations": []}]}
CALL = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f",
        "arguments": "{}"}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"}
REASONING = {"id": "rs_1", "type": "reasoning", "summary": []}
_PLAIN = st.builds(lambda role, text: {"role": role, "content": text},
                   st.sampled_from(["user", "assistant", "system", "developer"]),
                   st.sampled_from(["", "a", "b"]))
_OTHER = st.sampled_from([SAID, CALL, OUTPUT, REASONING,
                          {k: v for k, v in SAID.items() if k != "id"},
                          {**SAID, "content": [{"type": "output_text", "text": ""}]},
                          {"type": "message", "role": "user", "content": "typed"},
                          {"role": "assistant", "content": "named", "name": "x"},
                          {"role": "user", "content": [{"type": "input_text", "text": "a"}]}])


def own_fingerprints(messages: list[dict[str, Any]]) -> list[int]:
    return [fingerprint(m) for m in messages]


@given(st.lists(_PLAIN | _OTHER, max_size=12), st.sampled_from([None, "Be brief.", [SAID]]))
def test_the_fingerprints_are_each_message_s(items: list[Any], instructions: Any) -> None:
    messages = input_messages(instructions, items)
    assert isinstance(messages, Fingerprinted)
    assert messages.fingerprints == own_fingerprints(list(messages))
    # What placing them reads (proxy.loop.offload.fingerprinted) is those.
    assert short_fingerprints(messages) == fingerprint_all(list(messages))


def test_a_string_input_is_fingerprinted_too() -> None:
    messages = input_messages("Be brief.", "hi")
    assert messages == [{"role": "system", "content": "Be brief."},
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
