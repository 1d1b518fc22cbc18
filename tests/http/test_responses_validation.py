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

INVALID: list[Any] = [
    pytest.param({"input": "hi"}, "model", "missing_required_parameter", id="no-model"),
    pytest.param({"model": MODEL}, "input", "missing_required_parameter", id="no-input"),
    pytest.param({"model": MODEL, "input": 3}, "input", "invalid_type", id="input-number"),
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


@pytest.mark.parametrize(("body", "param", "code"), INVALID)
async def test_refused_with_the_param_named(body: dict[str, Any], param: str, code: str) -> None:
    model = ResponsesModel(agent(LOCKER))
    async with serve(model, path="/responses") as proxy:
        with pytest.raises(openai.BadRequestError) as raised:
            await proxy.client.responses.create(**body)
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["param"] == param and error["code"] == code
    assert error["type"] == "invalid_request_error" and error["message"]
    assert model.requests == []


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
