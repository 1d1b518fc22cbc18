"""`parse_chat_request` case by case: what is refused (and the `param` it names) and what
must pass untouched, including shapes only some providers' clients send."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.errors import InvalidRequest
from proxy.http.validation import _check_message, parse_chat_request


def chat(*messages: dict[str, Any], **fields: Any) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "messages": list(messages), **fields})


USER = {"role": "user", "content": "hi"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}

ACCEPTED = [
    pytest.param(chat(USER), id="plain"),
    pytest.param(
        chat({"role": "user", "content": "hi", "tool_calls": []}, {**USER, "tool_calls": None}),
        id="user-empty-tool-calls",
    ),
    pytest.param(chat({"role": "developer", "content": "rules"}, USER), id="developer"),
    # A provider's own part type in an answer resent as it came (Mistral's `thinking`).
    pytest.param(chat(USER, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": [{"type": "text", "text": "Hmm."}]},
        {"type": "text", "text": "42."}]}, USER), id="assistant-thinking-part"),
    pytest.param(
        chat({"role": "system", "content": [{"type": "text", "text": "rules"}]}, USER),
        id="system-text-parts",
    ),
    pytest.param(
        chat(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                    {"type": "file", "file": {"file_id": "file-1"}},
                ],
            }
        ),
        id="user-multimodal",
    ),
    pytest.param(
        chat(USER, {"role": "assistant", "content": None, "tool_calls": [CALL]}),
        id="assistant-only-tool-calls",
    ),
    pytest.param(chat(USER, {"role": "assistant", "tool_calls": [CALL]}), id="no-content-key"),
    pytest.param(
        chat(USER, {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}),
        id="assistant-refusal-part",
    ),
    pytest.param(
        chat(
            USER,
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "1"}]},
        ),
        id="tool-result-parts",
    ),
    pytest.param(
        chat(USER, {"role": "tool", "tool_call_id": "", "content": "x"}), id="gemini-empty-id"
    ),
    pytest.param(
        chat(USER, {"role": "function", "name": "f", "content": None}), id="legacy-function"
    ),
    pytest.param(
        chat(USER, {"role": "assistant", "content": "", "reasoning_content": "hm"}),
        id="provider-extra-fields",
    ),
    pytest.param(chat(USER, stream=None, tools=None), id="nulls"),
    pytest.param(
        chat(USER, tools=[{"type": "custom", "custom": {"name": "grep"}}]), id="custom-tool"
    ),
]


@pytest.mark.parametrize("raw", ACCEPTED)
def test_accepted_and_returned_untouched(raw: bytes) -> None:
    assert parse_chat_request(raw) == orjson.loads(raw)


REFUSED = [
    pytest.param(chat(USER, model=""), "model", id="empty-model"),
    pytest.param(chat(USER, model=4), "model", id="model-number"),
    pytest.param(orjson.dumps({"model": "m", "messages": []}), "messages", id="no-messages"),
    pytest.param(chat(USER, stream="yes"), "stream", id="stream-string"),
    pytest.param(chat({"content": "hi"}), "messages[0].role", id="no-role"),
    pytest.param(chat({"role": "user"}), "messages[0].content", id="user-without-content"),
    pytest.param(chat({"role": "user", "content": None}), "messages[0].content", id="user-null"),
    pytest.param(
        chat(USER, {"role": "assistant", "content": [{"type": "image_url", "image_url": {}}]}),
        "messages[1].content[0].type",
        id="image-from-assistant",
    ),
    pytest.param(
        chat(USER, {"role": "tool", "content": "42"}),
        "messages[1].tool_call_id",
        id="tool-without-call-id",
    ),
    pytest.param(
        chat(USER, {"role": "tool", "tool_call_id": "c", "content": 42}),
        "messages[1].content",
        id="tool-content-number",
    ),
    pytest.param(
        chat({"role": "user", "content": [{"type": "text"}]}),
        "messages[0].content[0].text",
        id="text-part-without-text",
    ),
    pytest.param(
        chat({"role": "user", "content": [{"type": "text", "text": 7}]}),
        "messages[0].content[0].text",
        id="text-part-number",
    ),
    pytest.param(
        chat({"role": "user", "content": ["hi"]}), "messages[0].content[0]", id="part-not-object"
    ),
    pytest.param(
        chat(USER, {"role": "assistant", "content": None, "tool_calls": {"id": "c"}}),
        "messages[1].tool_calls",
        id="tool-calls-not-list",
    ),
    pytest.param(
        chat(USER, {"role": "assistant", "content": None,
                    "tool_calls": [{"id": "c", "type": "function", "function": "lookup"}]}),
        "messages[1].tool_calls[0].function",
        id="tool-call-function-string",
    ),
    pytest.param(
        chat(USER, {"role": "assistant", "content": None,
                    "tool_calls": [{"id": "c", "type": "function"}]}),
        "messages[1].tool_calls[0].function",
        id="tool-call-without-function",
    ),
    pytest.param(
        chat(USER, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": 3, "arguments": "{}"}}]}),
        "messages[1].tool_calls[0].function.name",
        id="tool-call-name-number",
    ),
    pytest.param(
        chat(USER, {"role": "function", "content": "x"}),
        "messages[1].name",
        id="function-without-name",
    ),
    # Issue 13: an unhashable role was a 500; tool_calls on another role crashed ingest.
    pytest.param(chat({"role": {"a": 1}, "content": "x"}), "messages[0].role", id="role-dict"),
    pytest.param(chat({"role": ["user"], "content": "x"}), "messages[0].role", id="role-list"),
    pytest.param(
        chat({"role": "user", "content": "x", "tool_calls": 5}),
        "messages[0].tool_calls",
        id="user-tool-calls-number",
    ),
    pytest.param(
        chat({"role": "user", "content": "x", "tool_calls": "call"}),
        "messages[0].tool_calls",
        id="user-tool-calls-string",
    ),
    pytest.param(
        chat(USER, {"role": "tool", "tool_call_id": "c", "content": "1", "tool_calls": [1, 2]}),
        "messages[1].tool_calls",
        id="tool-message-tool-calls",
    ),
    pytest.param(
        chat({"role": "system", "content": "x", "tool_calls": [CALL]}),
        "messages[0].tool_calls",
        id="system-tool-calls",
    ),
    pytest.param(chat(USER, tools=["f"]), "tools[0]", id="tool-not-object"),
    pytest.param(
        chat(USER, tools=[{"type": "retrieval"}]), "tools[0].type", id="unknown-tool-type"
    ),
    pytest.param(chat(USER, tools=[{"type": "function"}]), "tools[0].function", id="no-spec"),
    pytest.param(
        chat(USER, tools=[{"type": "function", "function": {"name": ""}}]),
        "tools[0].function.name",
        id="empty-tool-name",
    ),
    pytest.param(
        chat(USER, tools=[{"type": "function", "function": {"name": 5}}]),
        "tools[0].function.name",
        id="tool-name-number",
    ),
]


def test_a_field_of_the_wrong_type_is_not_called_missing() -> None:
    # (It was "Missing required parameter" though the name was there: the review.)
    for tools in ([{"type": "function", "function": {"name": 5}}],
                  [{"type": "function", "function": "f"}]):
        with pytest.raises(InvalidRequest) as caught:
            parse_chat_request(chat(USER, tools=tools))
        error = caught.value.to_dict()["error"]
        assert error["code"] == "invalid_type" and "Missing" not in error["message"]


@pytest.mark.parametrize(("raw", "param"), REFUSED)
def test_refused_naming_the_field(raw: bytes, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(raw)
    error = caught.value.to_dict()["error"]
    assert caught.value.status_code == 400
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param in error["message"]


def test_invalid_utf8_is_named_as_such() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(b'{"model": "\xc3\x28", "messages": []}')
    assert caught.value.code == "invalid_utf8"


def test_invalid_json_is_named_as_such() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(b'{"model": "m",')
    assert caught.value.code == "invalid_json"
    assert caught.value.param is None


# Messages whose role may hold text, in shapes around the one a resent history repeats
# (role and text, which the request's check passes without looking further): each is
# refused exactly when the check of one message refuses it.
AROUND_PLAIN = [
    {"role": role, "content": content, **more}
    for role in ("system", "developer", "user", "assistant", "tool", "function", "critic")
    for content in ("hi", "", None, [{"type": "text", "text": "hi"}], 7)
    for more in ({}, {"tool_calls": [CALL]}, {"tool_calls": []}, {"tool_calls": None},
                 {"refusal": None}, {"name": "n"}, {"tool_call_id": "call_1"})
]  # fmt: skip


@pytest.mark.parametrize("message", AROUND_PLAIN, ids=lambda m: orjson.dumps(m).decode())
def test_a_message_in_a_long_history_is_refused_as_its_own_check_refuses_it(
    message: dict[str, Any],
) -> None:
    try:
        _check_message(message, "messages[100]")
    except InvalidRequest as exc:
        expected: str | None = exc.param
    else:
        expected = None
    history = [USER, {"role": "assistant", "content": "hello", "refusal": None}] * 50
    try:
        parse_chat_request(chat(*history, message))
    except InvalidRequest as exc:
        assert exc.param == expected
    else:
        assert expected is None
