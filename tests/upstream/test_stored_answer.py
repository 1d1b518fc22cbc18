"""What a relayed chat answer is stored as (`stored_answer`): the same content, calls and
error as the full assembly reads from it, on real recorded bodies and on edge cases."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.upstream.assemble import AssembledMessage
from proxy.upstream.completion import assemble_response, stored_answer
from tests.upstream.recordings import recordings, require_recordings


def stored(message: AssembledMessage) -> tuple[Any, ...]:
    return message.content, message.tool_calls, message.error is None


def completion(message: Any, **top: Any) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], **top}


CASES = [
    completion({"role": "assistant", "content": "Hello."}),
    completion({"role": "assistant", "content": ""}),
    completion({"role": "assistant", "content": "x", "refusal": None, "annotations": []}),
    completion({"role": "assistant", "content": None}),
    completion({"role": "assistant", "content": "x", "tool_calls": []}),
    completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
    completion({"role": "assistant", "content": "x"}, error={"message": "late"}),
    completion("not a message"),
    {"choices": [{"index": 1, "message": {"role": "assistant", "content": "second"}},
                 {"index": 0, "message": {"role": "assistant", "content": "first"}}]},
    {"choices": []},
    {"error": {"message": "nope", "type": "server_error"}},
    {"choices": [{"message": {"role": "assistant", "content": [{"type": "text", "text": "p"}]}}]},
]


@pytest.mark.parametrize("body", CASES)
def test_an_answer_is_stored_as_the_full_assembly_reads_it(body: dict[str, Any]) -> None:
    assert stored(stored_answer(body)) == stored(assemble_response(body))


def test_recorded_answers_are_stored_as_the_full_assembly_reads_them() -> None:
    require_recordings()
    bodies = []
    for recording in recordings():
        if recording.is_stream or recording.status >= 300:
            continue
        try:
            body = orjson.loads(recording.body)
        except orjson.JSONDecodeError:
            continue
        if isinstance(body, dict) and "choices" in body:
            bodies.append(body)
    assert len(bodies) >= 10
    plain = 0
    for body in bodies:
        assert stored(stored_answer(body)) == stored(assemble_response(body))
        plain += stored_answer(body).finish_reason is None  # read directly
    assert plain >= 3  # the direct reading is exercised, not only the fallback
