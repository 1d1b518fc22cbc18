"""The upstream bodies of a Responses request: the chat body the core packs, and from the
packed prompt a native Responses request or a chat completion (loop.responses_adapter)."""

from __future__ import annotations

from typing import Any

from proxy.loop.responses_adapter import chat_body, chat_upstream_body, native_body
from proxy.upstream.responses_format import INSTRUCTIONS, ITEMS, assistant_message
from tests.upstream.test_responses_format import MESSAGE, REASONING

REQUEST: dict[str, Any] = {
    "model": "gpt-5", "instructions": "Be brief.", "input": "Weather?",
    "previous_response_id": "resp_1", "store": False, "metadata": {"a": "b"},
    "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "low"},
    "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
    "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
              {"type": "web_search"}],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "max_output_tokens": 500, "temperature": 0.3, "stream": True,
}


def test_the_chat_body_of_a_request() -> None:
    chat = chat_body(REQUEST)
    assert chat == {
        "model": "gpt-5",
        "messages": [{"role": "system", "content": "Be brief.", INSTRUCTIONS: True},
                     {"role": "user", "content": "Weather?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 500, "stream": True, "temperature": 0.3, "store": False,
        "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "w", "schema": {"type": "object"}}},
    }


def test_the_native_body_of_a_packed_prompt() -> None:
    packed = {**chat_body(REQUEST), "max_tokens": 300, "messages": [
        {"role": "developer", "content": "rules and context"},
        {"role": "user", "content": "Weather?"}]}
    packed["tools"] = [*packed["tools"], {"type": "function", "function": {"name": "page_fault"}}]
    body = native_body(REQUEST, packed, stream=False)
    assert body == {
        "model": "gpt-5", "store": False, "metadata": {"a": "b"},
        "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "low"},
        "text": REQUEST["text"], "temperature": 0.3,
        "input": [{"role": "developer", "content": "rules and context"},
                  {"role": "user", "content": "Weather?"}],
        "tools": [{"type": "function", "name": "get_weather",
                   "parameters": {"type": "object"}},
                  {"type": "function", "name": "page_fault"}, {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 300,
    }
    assert native_body(REQUEST, packed, stream=True)["stream"] is True


def test_the_chat_upstream_body_leaves_the_carried_items_out() -> None:
    packed = {"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, ITEMS: [REASONING]},
        assistant_message([REASONING, MESSAGE]),
    ]}
    assert chat_upstream_body(packed)["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Let me look."}]
