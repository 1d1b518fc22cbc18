"""ChunkAccumulator on hand-written chunks for each dialect of SSE_FORMAT.md sections 2-7."""

from __future__ import annotations

import json
from typing import Any

import openai.types.chat as chat_types

from proxy.upstream.assemble import AssembledMessage, ChunkAccumulator, effective_finish_reason
from proxy.upstream.completion import assemble_response, to_chat_completion
from proxy.upstream.sse import SSEEvent

from .helpers import chunk, tool


def assemble(chunks: list[dict[str, Any]], **kwargs: Any) -> AssembledMessage:
    accumulator = ChunkAccumulator(**kwargs)
    for c in chunks:
        accumulator.feed(c)
    return accumulator.result()


def calls(message: AssembledMessage) -> list[tuple[str, str, str]]:
    return [(c["id"], c["function"]["name"], c["function"]["arguments"])
            for c in message.tool_calls]


def test_plain_text() -> None:
    message = assemble([
        chunk({"role": "assistant", "content": "", "refusal": None}),
        chunk({"content": "Hel"}), chunk({"content": "lo"}),
        chunk({}, finish="stop"),
    ])
    assert message.content == "Hello"
    assert message.tool_calls == []
    assert message.finish_reason == "stop"
    assert (message.id, message.model, message.created) == ("chatcmpl-up", "up-model",
                                                            1700000000)


def test_vllm_arguments_null_then_null_id_name_type() -> None:
    header = {"index": 0, "id": "chatcmpl-tool-abc", "type": "function",
              "function": {"name": "page_fault", "arguments": None}}
    later = {"index": 0, "id": None, "type": None,
             "function": {"name": None, "arguments": '{"page_id":'}}
    last = {"index": 0, "id": None, "type": None, "function": {"name": None, "arguments": '"m"}'}}
    message = assemble([chunk({"role": "assistant", "tool_calls": [header]}),
                        chunk({"tool_calls": [later]}), chunk({"tool_calls": [last]}),
                        chunk({}, finish="tool_calls")])
    assert calls(message) == [("chatcmpl-tool-abc", "page_fault", '{"page_id":"m"}')]


def test_llamacpp_header_carries_first_argument_text() -> None:
    message = assemble([
        chunk({"role": "assistant", "content": None,
               "tool_calls": [tool(0, id="Xy12", type="function", name="f", arguments="{")]}),
        chunk({"tool_calls": [tool(0, arguments='"a":1}')]}),
        chunk({}, finish="tool_calls", timings={"predicted_ms": 3.5}),
    ])
    assert calls(message) == [("Xy12", "f", '{"a":1}')]
    assert message.extra["timings"] == {"predicted_ms": 3.5}
    assert "timings" not in to_chat_completion(message)


def test_tgi_repeats_id_zero_and_role_name_null_after_first() -> None:
    def frag(index: int, name: str | None, args: str) -> dict[str, Any]:
        return {"index": index, "id": "0", "type": "function",
                "function": {"name": name, "arguments": args}}

    message = assemble([
        chunk({"role": "assistant", "tool_calls": [frag(0, "a", '{"x"')]}),
        chunk({"role": "assistant", "tool_calls": [frag(0, None, ":1}")]}),
        chunk({"role": "assistant", "tool_calls": [frag(1, "b", "{}")]}),
        chunk({"role": "assistant"}, finish="stop"),
    ])
    (first, second) = message.tool_calls
    assert (first["id"], first["function"]) == ("0", {"name": "a", "arguments": '{"x":1}'})
    # a second call reusing id "0" gets its own id so tool results stay unambiguous
    assert second["id"].startswith("call_") and second["function"]["name"] == "b"
    assert message.id_map == {second["id"]: "0"}
    assert message.finish_reason == "tool_calls"


def test_glm_empty_name_on_later_fragments() -> None:
    message = assemble([
        chunk({"tool_calls": [tool(0, id="c1", name="search_pages", arguments="")]}),
        chunk({"tool_calls": [tool(0, id="", name="", arguments='{"query":"x"}')]}),
    ])
    assert calls(message) == [("c1", "search_pages", '{"query":"x"}')]


def test_mistral_no_index_no_type_finish_and_usage_in_same_chunk() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    message = assemble([
        chunk({"role": "assistant", "content": ""}),
        chunk({"tool_calls": [
            {"id": "abc123def", "function": {"name": "page_fault", "arguments": '{"page_id":"a"}'}},
            {"id": "ghi456jkl", "function": {"name": "client_tool", "arguments": "{}"}},
        ]}, finish="tool_calls", usage=usage),
    ])
    assert calls(message) == [("abc123def", "page_fault", '{"page_id":"a"}'),
                              ("ghi456jkl", "client_tool", "{}")]
    assert message.usage == usage
    assert message.content is None


def test_no_index_fragments_continue_the_current_call() -> None:
    message = assemble([
        chunk({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": '{"k"'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": ':"v"}'}}]}),
        # same tool again without id after a complete call: a second call
        chunk({"tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}),
    ])
    assert [(c[1], c[2]) for c in calls(message)] == [("f", '{"k":"v"}'), ("f", "{}")]


def test_anthropic_compat_text_then_index_one() -> None:
    message = assemble([
        chunk({"role": "assistant", "content": "Let me look."}),
        chunk({"tool_calls": [tool(1, id="toolu_01", type="function", name="page_fault",
                                   arguments="")]}),
        chunk({"tool_calls": [tool(1, arguments='{"page_id":"msg_3"}')]}),
        chunk({}, finish="tool_calls"),
    ])
    assert message.content == "Let me look."
    assert calls(message) == [("toolu_01", "page_fault", '{"page_id":"msg_3"}')]


def test_same_index_reused_for_a_new_call() -> None:
    # Some servers send each parallel call whole, all at index 0, each with its own id.
    message = assemble([
        chunk({"tool_calls": [tool(0, id="call_a", name="f", arguments="{}")]}),
        chunk({"tool_calls": [tool(0, id="call_b", name="g", arguments="{}")]}),
    ])
    assert [c[0] for c in calls(message)] == ["call_a", "call_b"]


def test_same_index_same_tool_twice_with_new_ids() -> None:
    message = assemble([
        chunk({"tool_calls": [tool(0, id="call_a", name="page_fault", arguments='{"p":1}')]}),
        chunk({"tool_calls": [tool(0, id="call_b", name="page_fault", arguments='{"p":2}')]}),
    ])
    assert [(c[0], c[2]) for c in calls(message)] == [("call_a", '{"p":1}'), ("call_b", '{"p":2}')]


def test_relay_stamping_a_fresh_id_on_every_fragment() -> None:
    message = assemble([
        chunk({"tool_calls": [tool(0, id="id-1", name="f", arguments='{"k":')]}),
        chunk({"tool_calls": [tool(0, id="id-2", name="f", arguments='"v"')]}),
        chunk({"tool_calls": [tool(0, id="id-3", arguments="}")]}),
    ])
    assert calls(message) == [("id-1", "f", '{"k":"v"}')]


def test_tool_calls_empty_or_null_on_text_and_role_null() -> None:
    message = assemble([
        chunk({"role": None, "content": "a", "tool_calls": []}),
        chunk({"role": None, "content": "b", "tool_calls": None}),
        chunk({"role": None, "content": None}, finish="stop"),
    ])
    assert message.content == "ab"
    assert message.tool_calls == []


def test_stop_after_tool_calls_becomes_tool_calls() -> None:
    for raw in ("stop", "eos", None):
        message = assemble([chunk({"tool_calls": [tool(0, id="c", name="f", arguments="{}")]},
                                  finish=raw)])
        assert message.finish_reason == "tool_calls"
        assert message.upstream_finish_reason == raw
    assert effective_finish_reason("length", True) == "length"
    assert effective_finish_reason(None, False) == "stop"
    assert effective_finish_reason("content_filter", False) == "content_filter"


def test_finish_repeated_and_cumulative_usage_last_wins() -> None:
    message = assemble([
        chunk({"content": "a"}, usage={"prompt_tokens": 3, "completion_tokens": 1,
                                       "total_tokens": 4}),
        chunk({"content": "b"}, finish="stop", usage={"prompt_tokens": 3,
                                                      "completion_tokens": 2, "total_tokens": 5}),
        chunk({"content": ""}, finish="stop", usage=None),
    ])
    assert message.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert message.finish_reason == "stop"


def test_both_reasoning_keys_do_not_double() -> None:
    message = assemble([
        chunk({"reasoning": "think", "reasoning_content": "think"}),
        chunk({"content": "done"}),
    ])
    assert (message.reasoning_key, message.reasoning) == ("reasoning_content", "think")
    assert message.content == "done"


def test_error_event_with_and_without_json() -> None:
    accumulator = ChunkAccumulator()
    accumulator.feed(chunk({"content": "par"}))
    accumulator.feed_event(SSEEvent(data="upstream exploded", event="error"))
    message = accumulator.result()
    assert message.error is not None
    assert "upstream exploded" in message.error["message"]
    assert message.error["type"] == "server_error"
    assert message.finish_reason is None

    accumulator = ChunkAccumulator()
    accumulator.feed_event(SSEEvent(data='{"message":"bad","code":429}', event="error"))
    error = accumulator.result().error
    assert error is not None
    assert (error["message"], error["code"], error["type"]) == ("bad", "429", "rate_limit_error")


def test_feed_event_skips_comments_and_notes_done() -> None:
    accumulator = ChunkAccumulator()
    assert accumulator.feed_event(SSEEvent(comment="OPENROUTER PROCESSING")) is None
    assert not accumulator.finished
    assert accumulator.feed_event(SSEEvent(data="[DONE]")) is None
    assert accumulator.done and accumulator.finished


def test_chunk_update_reports_fragment_start() -> None:
    accumulator = ChunkAccumulator()
    first = accumulator.feed(chunk({"tool_calls": [tool(3, id="c", name="f", arguments="{")]}))
    second = accumulator.feed(chunk({"tool_calls": [tool(3, arguments="}")]}))
    assert first.has_choice and first.tool_calls[0].started
    assert first.tool_calls[0].call.position == 0
    assert not second.tool_calls[0].started and second.tool_calls[0].arguments == "}"
    assert not accumulator.feed({"choices": [], "usage": None}).has_choice


def test_upstream_chunk_objects_are_not_modified() -> None:
    details = [{"type": "reasoning.text", "text": "a", "index": 0}]
    first = chunk({"reasoning_details": details})
    assemble([first, chunk({"reasoning_details": [{"type": "reasoning.text", "text": "b",
                                                   "index": 0}]})])
    assert details == [{"type": "reasoning.text", "text": "a", "index": 0}]


def test_nonstream_tool_calls_empty_list_and_missing_finish() -> None:
    message = assemble_response({"id": "x", "model": "m", "created": 5, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi", "tool_calls": []}}]})
    assert message.tool_calls == [] and message.content == "hi"
    assert message.finish_reason == "stop"


def test_nonstream_parallel_calls_without_index() -> None:
    message = assemble_response({"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        ]}}]})
    ids = [c["id"] for c in message.tool_calls]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
    assert message.finish_reason == "tool_calls"


def test_to_chat_completion_removes_vm_calls_and_sums_usage() -> None:
    message = assemble_response({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 9, "model": "gpt-x",
        "system_fingerprint": "fp_1", "service_tier": "default",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "reasoning_content": "hmm",
            "annotations": [],
            "tool_calls": [
                {"id": "v1", "type": "function",
                 "function": {"name": "page_fault", "arguments": '{"page_id":"msg_1"}'}},
                {"id": "c1", "type": "function", "function": {"name": "weather",
                                                              "arguments": "{}"}},
            ]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    })
    summed = {"total_tokens": 30, "prompt_tokens": 20, "completion_tokens": 10}
    client_only = [c for c in message.tool_calls if c["function"]["name"] != "page_fault"]
    body = to_chat_completion(message, tool_calls=client_only, usage=summed, id="chatcmpl-vm")
    assert list(body) == ["id", "object", "created", "model", "choices", "usage",
                          "service_tier", "system_fingerprint"]
    assert body["id"] == "chatcmpl-vm" and body["created"] == 9
    assert list(body["usage"]) == ["prompt_tokens", "completion_tokens", "total_tokens"]
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [c["id"] for c in choice["message"]["tool_calls"]] == ["c1"]
    assert choice["message"]["reasoning_content"] == "hmm"
    chat_types.ChatCompletion.model_validate(body)

    final = to_chat_completion(message, tool_calls=[], content="Lisbon.")
    assert final["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in final["choices"][0]["message"]
    assert final["choices"][0]["message"]["content"] == "Lisbon."
    chat_types.ChatCompletion.model_validate(final)


def test_to_message_for_the_upstream_conversation() -> None:
    message = assemble([
        chunk({"role": "assistant", "reasoning": "secret", "channel": "analysis"}),
        chunk({"tool_calls": [tool(0, id="c", name="f", arguments="{}",
                                   extra_content={"google": {"thought_signature": "sig"}})]}),
    ])
    out = message.to_message()
    assert out == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"},
         "extra_content": {"google": {"thought_signature": "sig"}}}]}
    assert message.to_message(include_reasoning=True)["reasoning"] == "secret"
    json.dumps(out)
