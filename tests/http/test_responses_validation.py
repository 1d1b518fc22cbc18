"""Responses API requests the proxy refuses itself, as the real `openai` SDK sees them: a
400 whose `param` names the field. None reaches the upstream; what the proxy does not read
(reasoning items, unknown items, unknown fields) is not refused."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.loop.harness import MODEL, serve
from tests.loop.history import LOCKER
from tests.loop.scripted import agent
from tests.loop.scripted_responses import ResponsesModel

USER = {"role": "user", "content": "hi"}
# An output item as a client resends it, between plain messages (a resent history).
SAID = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": "Noted.", "annotations": []}]}
HISTORY = [USER, SAID, USER, {"role": "assistant", "content": "ok"}, USER, SAID]


def said(*parts: Any) -> dict[str, Any]:
    return {**SAID, "content": [*SAID["content"], *parts]}

INVALID: list[Any] = [
    pytest.param({"input": "hi"}, "model", "missing_required_parameter", id="no-model"),
    pytest.param({"model": MODEL}, "input", "missing_required_parameter", id="no-input"),
    pytest.param({"model": MODEL, "input": 3}, "input", "invalid_type", id="input-number"),
    # Nothing to answer (was an IndexError placing it: 503 under X-VM-Session; the review).
    pytest.param({"model": MODEL, "input": []}, "input", "empty_array", id="input-empty"),
    pytest.param({"model": MODEL, "input": ["hi"]}, "input[0]", "invalid_type",
                 id="item-not-object"),
    pytest.param({"model": MODEL, "input": [{"content": "x"}]}, "input[0].type",
                 "missing_required_parameter", id="item-without-type"),
    pytest.param({"model": MODEL, "input": [{"role": "wizard", "content": "x"}]},
                 "input[0].role", "invalid_value", id="unknown-role"),
    pytest.param({"model": MODEL, "input": [{"role": "user"}]}, "input[0].content",
                 "missing_required_parameter", id="message-without-content"),
    pytest.param({"model": MODEL, "input": [USER, {"role": "user", "content": [
        {"type": "output_text", "text": "x"}]}]}, "input[1].content[0].type",
                 "invalid_value", id="user-output-text"),
    pytest.param({"model": MODEL, "input": [{"role": "user", "content": [
        {"type": "input_text", "text": 5}]}]}, "input[0].content[0].text", "invalid_type",
                 id="text-not-string"),
    pytest.param({"model": MODEL, "input": [{"role": "user", "content": [
        {"type": "input_image"}]}]}, "input[0].content[0].image_url",
                 "missing_required_parameter", id="image-without-url"),
    pytest.param({"model": MODEL, "input": [{"type": "function_call", "call_id": "c",
                                             "name": "f"}]}, "input[0].arguments",
                 "missing_required_parameter", id="call-without-arguments"),
    pytest.param({"model": MODEL, "input": [{"type": "function_call_output", "output": "x"}]},
                 "input[0].call_id", "missing_required_parameter", id="output-without-call"),
    # Invalid items among a resent history's plain messages and output items: the same
    # 400s, the param naming the item where it is.
    pytest.param({"model": MODEL, "input": [*HISTORY, said({"type": "output_text", "text": 5})]},
                 "input[6].content[1].text", "invalid_type", id="history-output-text"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {**SAID, "content": [
        {"type": "output_text", "text": None}]}]}, "input[6].content[0].text",
                 "missing_required_parameter", id="history-one-part-text-null"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {**SAID, "role": "user"}]},
                 "input[6].content[0].type", "invalid_value", id="history-user-output-text"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {**SAID, "content": [
        {"type": "refusal", "text": "x"}]}]}, "input[6].content[0].refusal",
                 "missing_required_parameter", id="history-one-part-refusal"),
    pytest.param({"model": MODEL, "input": [*HISTORY, said({"type": "input_image"})]},
                 "input[6].content[1].type", "invalid_value", id="history-assistant-image"),
    pytest.param({"model": MODEL, "input": [*HISTORY, said({"type": "refusal", "refusal": 1})]},
                 "input[6].content[1].refusal", "invalid_type", id="history-refusal"),
    pytest.param({"model": MODEL, "input": [*HISTORY, said({"type": "refusal"})]},
                 "input[6].content[1].refusal", "missing_required_parameter",
                 id="history-refusal-missing"),
    pytest.param({"model": MODEL, "input": [*HISTORY, said("text")]},
                 "input[6].content[1]", "invalid_type", id="history-part-not-object"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {**SAID, "role": "tool"}]},
                 "input[6].role", "invalid_value", id="history-output-role"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {**SAID, "content": 3}]},
                 "input[6].content", "invalid_type", id="history-content-number"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {"role": "tool", "content": "x"}, USER]},
                 "input[6].role", "invalid_value", id="history-plain-unknown-role"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {"role": ["user"], "content": "x"}]},
                 "input[6].role", "invalid_value", id="history-role-list"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {"role": "user", "content": None}]},
                 "input[6].content", "missing_required_parameter", id="history-content-null"),
    pytest.param({"model": MODEL, "input": [*HISTORY, 7]}, "input[6]", "invalid_type",
                 id="history-item-number"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {"type": 3}]}, "input[6].type",
                 "missing_required_parameter", id="history-type-number"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {"type": "function_call_output",
                                                       "call_id": "c", "output": 5}]},
                 "input[6].output", "invalid_type", id="history-output-number"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {"type": "function_call_output",
                                                       "call_id": "c"}]},
                 "input[6].output", "missing_required_parameter", id="history-output-missing"),
    pytest.param({"model": MODEL, "input": [*HISTORY, {"type": "function_call",
                                                       "call_id": 1, "name": "f",
                                                       "arguments": "{}"}]},
                 "input[6].call_id", "invalid_type", id="history-call-id-number"),
    pytest.param({"model": MODEL, "instructions": [USER, {"role": "wizard", "content": "x"}],
                  "input": "hi"}, "instructions[1].role", "invalid_value",
                 id="instructions-item"),
    pytest.param({"model": MODEL, "instructions": [{"role": "wizard", "content": "x"}],
                  "input": [*HISTORY, {"role": "user"}]}, "input[6].content",
                 "missing_required_parameter", id="input-refused-before-instructions"),
    pytest.param({"model": MODEL, "input": "hi", "tools": [{"type": "function"}]},
                 "tools[0].name", "missing_required_parameter", id="function-without-name"),
    pytest.param({"model": MODEL, "input": "hi", "tools": [{"name": "f"}]}, "tools[0].type",
                 "missing_required_parameter", id="tool-without-type"),
    pytest.param({"model": MODEL, "input": "hi", "tool_choice": "sometimes"}, "tool_choice",
                 "invalid_value", id="tool-choice-word"),
    pytest.param({"model": MODEL, "input": "hi", "tool_choice": {"type": "function"}},
                 "tool_choice.name", "missing_required_parameter", id="tool-choice-no-name"),
    pytest.param({"model": MODEL, "input": "hi", "max_output_tokens": 8},
                 "max_output_tokens", "integer_below_min_value", id="max-output-too-small"),
    pytest.param({"model": MODEL, "input": "hi", "max_output_tokens": "many"},
                 "max_output_tokens", "invalid_type", id="max-output-not-int"),
    pytest.param({"model": MODEL, "input": "hi", "text": {"format": {"type": "yaml"}}},
                 "text.format.type", "invalid_value", id="text-format-unknown"),
    pytest.param({"model": MODEL, "input": "hi", "text": {"format": {
        "type": "json_schema", "name": "x"}}}, "text.format.schema",
                 "missing_required_parameter", id="json-schema-without-schema"),
    pytest.param({"model": MODEL, "input": "hi", "store": "no"}, "store", "invalid_type",
                 id="store-not-bool"),
    pytest.param({"model": MODEL, "input": "hi", "stream": 1}, "stream", "invalid_type",
                 id="stream-not-bool"),
    pytest.param({"model": MODEL, "input": "hi", "metadata": {"k": 1}}, "metadata.k",
                 "invalid_type", id="metadata-value"),
    pytest.param({"model": MODEL, "input": "hi", "metadata": {str(i): "v" for i in range(17)}},
                 "metadata", "object_above_max_properties", id="metadata-too-many"),
    pytest.param({"model": MODEL, "input": "hi", "previous_response_id": 7},
                 "previous_response_id", "invalid_type", id="previous-not-string"),
]


@pytest.mark.parametrize("off", [False, True], ids=["memory", "mode-off"])
@pytest.mark.parametrize(("body", "param", "code"), INVALID)
async def test_refused_with_the_param_named(
    body: dict[str, Any], param: str, code: str, off: bool
) -> None:
    # Mode off relays the body as it came, but checks it all the same (its items without
    # making the chat messages the memory reads).
    model = ResponsesModel(agent(LOCKER))
    headers = {"x-vm-mode": "off"} if off else {}
    async with serve(model, path="/responses") as proxy:
        with pytest.raises(openai.BadRequestError) as raised:
            await proxy.client.responses.create(**body, extra_headers=headers)
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["param"] == param and error["code"] == code
    assert error["type"] == "invalid_request_error" and error["message"]
    assert model.requests == []


async def test_a_resent_history_of_output_items_passes() -> None:
    model = ResponsesModel(agent(LOCKER))
    history = [*HISTORY, said({"type": "refusal", "refusal": "no"}),
               {"role": "assistant", "content": ""}, {"type": "function_call", "call_id": "c",
                                                      "name": "f", "arguments": "{}"},
               {"type": "function_call_output", "call_id": "c", "output": [
                   {"type": "input_text", "text": "42"}]}, USER]
    async with serve(model, path="/responses") as proxy:
        response = await proxy.client.responses.create(model=MODEL, input=history)
    assert response.status == "completed"
    assert len(model.requests) == 1


async def test_what_the_proxy_does_not_read_passes() -> None:
    model = ResponsesModel(agent(LOCKER))
    async with serve(model, path="/responses") as proxy:
        response = await proxy.client.responses.create(
            model=MODEL,
            input=[USER, {"type": "reasoning", "id": "rs_1", "summary": [], "x-new": 1},
                   {"type": "some_future_item", "anything": True}],
            extra_body={"a_future_field": {"nested": 1}},
        )
    assert response.status == "completed"
    sent = model.requests[0]
    assert sent["a_future_field"] == {"nested": 1}
    assert {"type": "some_future_item", "anything": True} in sent["input"]


@pytest.mark.parametrize("where", ["stored", "new"])
async def test_a_resent_history_whose_start_is_stored_is_still_checked(where: str) -> None:
    # The second request's first items are stored, and fingerprinted alike (an assistant
    # message item's extra part leaves its text as it was): the invalid item is refused
    # all the same, wherever it is.
    model = ResponsesModel(agent(LOCKER))
    history = [*HISTORY, USER]
    bad = said({"type": "input_image"})
    async with serve(model, path="/responses") as proxy:
        await proxy.client.responses.create(model=MODEL, input=history)
        resent = [*history, SAID, USER]
        index = 1 if where == "stored" else len(history)
        resent[index] = bad
        with pytest.raises(openai.BadRequestError) as raised:
            await proxy.client.responses.create(model=MODEL, input=resent)
        await proxy.client.responses.create(model=MODEL, input=[*history, SAID, USER])
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["param"] == f"input[{index}].content[1].type"
    assert error["code"] == "invalid_value"
    assert len(model.requests) == 2
