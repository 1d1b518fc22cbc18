"""The Responses shapes in the chat representation and back (responses_format)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from proxy.loop.responses_input import input_messages
from proxy.upstream.responses_format import (
    INSTRUCTIONS,
    ITEMS,
    OUTPUT_TYPES,
    assistant_message,
    input_items,
)
from proxy.vm.identity import chain_hashes
from tests.support.resent_items import PLAIN_MESSAGES, other_items

REASONING = {"id": "rs_1", "type": "reasoning", "summary": [], "encrypted_content": "e1"}
MESSAGE = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
           "phase": "commentary",
           "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}]}
CALL = {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
        "name": "get_weather", "arguments": '{"city":"Porto"}'}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"}


def test_input_becomes_chat_messages() -> None:
    messages = input_messages("Be brief.", [
        {"role": "user", "content": "Weather?"},
        REASONING, MESSAGE, CALL, OUTPUT,
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "And this?"},
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
    ])
    assert messages[:2] == [{"role": "system", "content": "Be brief.", INSTRUCTIONS: True},
                            {"role": "user", "content": "Weather?"}]
    assistant = messages[2]
    assert assistant["content"] == "Let me look."
    assert assistant["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Porto"}'}}]
    assert assistant[ITEMS] == [REASONING, MESSAGE, CALL]  # as they came
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}
    assert messages[4] == {"role": "user", "content": [
        {"type": "text", "text": "And this?"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]}
    assert len(messages) == 5


def test_what_chat_cannot_say_rides_along() -> None:
    by_file = {"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}
    search = {"id": "ws_1", "type": "web_search_call", "status": "completed"}
    messages = input_messages(None, [by_file, search])
    assert messages[0]["content"] == [{"type": "text", "text": "[input_image]"}]
    assert messages[0][ITEMS] == [by_file]
    assert messages[1] == {"role": "assistant", "content": None, ITEMS: [search]}
    assert input_items(messages) == [by_file, search]


def test_the_answer_hashes_as_the_clients_resend_of_it() -> None:
    # The proxy stores its answer from the items it sent; the client resends them in full
    # (as the Agents SDK does), or trimmed to what the API requires.
    stored = assistant_message([REASONING, MESSAGE, CALL])
    full = input_messages(None, [REASONING, MESSAGE, CALL])
    trimmed = input_messages(None, [
        {"role": "assistant", "content": "Let me look."},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city":"Porto"}'}])
    assert len(full) == len(trimmed) == 1
    assert chain_hashes("t", [stored]) == chain_hashes("t", full) == chain_hashes("t", trimmed)


def test_packed_messages_go_back_as_input_items() -> None:
    packed = [
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": "Weather?"},
        assistant_message([REASONING, MESSAGE, CALL]),
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_2", "type": "function",
             "function": {"name": "search_pages", "arguments": '{"query":"x"}'}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": '{"results":[]}'},
        {"role": "assistant", "content": "Plain."},
    ]
    assert input_items(packed) == [
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": "Weather?"},
        REASONING, MESSAGE, CALL,
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
        {"type": "function_call", "call_id": "call_2", "name": "search_pages",
         "arguments": '{"query":"x"}'},
        {"type": "function_call_output", "call_id": "call_2", "output": '{"results":[]}'},
        {"role": "assistant", "content": "Plain."},
    ]


def test_a_reasoning_item_without_its_follower_is_not_replayed() -> None:
    lone = assistant_message([REASONING, {**REASONING, "id": "rs_2"}, MESSAGE])
    assert input_items([lone]) == [{**REASONING, "id": "rs_2"}, MESSAGE]
    assert input_items([assistant_message([MESSAGE, REASONING])]) == [MESSAGE]


def _one_by_one(items: list[Any]) -> list[dict[str, Any]]:
    """The conversion as it reads one item at a time (what taking the runs of plain
    messages whole must give)."""
    messages: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    joinable = False
    for item in items:
        role = item.get("role")
        plain = len(item) == 2 and isinstance(item.get("content"), str)
        kind = "message" if item.get("type") is None and "role" in item else item.get("type")
        if plain and role in ("user", "system", "developer") or (
            kind == "message" and role in ("user", "system", "developer")
        ) or kind in OUTPUT_TYPES:
            if pending:
                messages.append(assistant_message(pending))
                pending = []
            messages.append(item if plain else input_messages(None, [item])[0])
            joinable = False
        elif plain and role == "assistant" and not pending and item["content"]:
            messages.append(item)
            joinable = True
        else:
            if joinable:
                pending.append(messages.pop())
                joinable = False
            pending.append(item)
    if pending:
        messages.append(assistant_message(pending))
    return messages


@given(st.lists(PLAIN_MESSAGES | other_items(MESSAGE, REASONING, CALL, OUTPUT), max_size=12))
def test_runs_of_plain_messages_convert_as_one_item_at_a_time(items: list[Any]) -> None:
    assert input_messages(None, items) == _one_by_one(items)
    assert input_messages("Be brief.", items)[1:] == _one_by_one(items)
