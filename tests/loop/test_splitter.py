from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from proxy.loop.citations import CitationStripper
from proxy.loop.splitter import StreamSplitter
from proxy.upstream.assemble import AssembledMessage, ChunkAccumulator
from proxy.upstream.sse import DONE, encode_data
from tests.upstream.helpers import assemble_stream, chunk, events_of, tool
from tests.upstream.recordings import Recording, streamed

VM = {"page_fault", "search_pages"}
STREAM_ID = "chatcmpl-client"
CREATED = 1234


def splitter(**kwargs: Any) -> StreamSplitter:
    kwargs.setdefault("client_stream_id", STREAM_ID)
    kwargs.setdefault("created", CREATED)
    return StreamSplitter(kwargs.pop("vm", VM), **kwargs)


def run(s: StreamSplitter, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in chunks:
        out.extend(s.feed(c))
    out.extend(s.end())
    return out


def client_view(chunks: list[dict[str, Any]]) -> AssembledMessage:
    """What a client reassembles from the chunks (each one validated against the SDK type)."""
    accumulator = ChunkAccumulator()
    for c in chunks:
        ChatCompletionChunk.model_validate(c)
        accumulator.feed(c)
    return accumulator.result()


def roles(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["choices"][0]["delta"]["role"] for c in chunks
            if c["choices"] and "role" in c["choices"][0]["delta"]]


def assert_one_envelope(chunks: list[dict[str, Any]], model: str) -> None:
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        (STREAM_ID, CREATED, model, "chat.completion.chunk")}


def test_text_only() -> None:
    s = splitter()
    out = run(s, [
        chunk({"role": "assistant", "content": "", "refusal": None}, obfuscation="xx"),
        chunk({"content": "Hello"}), chunk({"content": " world"}),
        chunk({}, finish="stop"),
        {"id": "chatcmpl-up", "choices": [], "usage": {"prompt_tokens": 1,
                                                        "completion_tokens": 2,
                                                        "total_tokens": 3}},
    ])
    assert [c["choices"][0]["delta"] for c in out] == [
        {"role": "assistant", "content": ""}, {"content": "Hello"}, {"content": " world"}]
    assert all(c["choices"][0]["finish_reason"] is None for c in out)
    assert all("usage" not in c and "obfuscation" not in c for c in out)
    assert_one_envelope(out, "up-model")
    result = s.outcome()
    assert (result.content, result.finish_reason, result.vm_calls, result.client_calls) == (
        "Hello world", "stop", [], [])
    assert result.usage == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    final = s.finish_chunk("stop")
    assert final["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                   "finish_reason": "stop"}
    assert client_view([*out, final]).content == "Hello world"


def test_vm_call_only_forwards_nothing() -> None:
    """Not even the role: the upstream said `content: null` (tools), so the role waits for
    what the client is shown, in the next iteration (`role_sent` stays False)."""
    s = splitter()
    out = run(s, [
        chunk({"role": "assistant", "content": None, "tool_calls": [
            tool(0, id="call_v", type="function", name="page_fault", arguments="")]}),
        chunk({"tool_calls": [tool(0, arguments='{"page_id":')]}),
        chunk({"tool_calls": [tool(0, arguments='"msg_5"}')]}),
        chunk({}, finish="tool_calls"),
    ])
    assert out == [] and not s.role_sent
    result = s.outcome()
    assert result.vm_calls == [{"id": "call_v", "type": "function", "function": {
        "name": "page_fault", "arguments": '{"page_id":"msg_5"}'}}]
    assert result.client_calls == [] and result.finish_reason == "tool_calls"


def test_vm_call_on_a_later_iteration_forwards_nothing() -> None:
    s = splitter(first_iteration=False, model="m1")
    out = run(s, [
        chunk({"role": "assistant", "content": None, "tool_calls": [
            tool(0, id="call_v", type="function", name="search_pages", arguments='{"q":1}')]}),
        chunk({}, finish="tool_calls"),
    ])
    assert out == []
    assert s.outcome().vm_calls[0]["function"]["name"] == "search_pages"


def test_text_then_vm_call_forwards_the_text() -> None:
    s = splitter()
    out = run(s, [
        chunk({"role": "assistant", "content": "Let me check. "}),
        chunk({"tool_calls": [tool(0, id="v", type="function", name="page_fault",
                                   arguments='{"page_id":"msg_1"}')]}),
        chunk({}, finish="tool_calls"),
    ])
    assert [c["choices"][0]["delta"] for c in out] == [
        {"role": "assistant", "content": "Let me check. "}]
    assert s.outcome().forwarded_content == "Let me check. "


def test_client_and_vm_calls_in_one_response() -> None:
    s = splitter()
    out = run(s, [
        chunk({"role": "assistant", "content": None, "tool_calls": [
            tool(0, id="v1", type="function", name="page_fault", arguments="")]}),
        chunk({"tool_calls": [tool(0, arguments='{"page_id":"msg_1"}')]}),
        chunk({"tool_calls": [tool(1, id="c1", type="function", name="weather", arguments="")]}),
        chunk({"tool_calls": [tool(1, arguments='{"city":')]}),
        chunk({"tool_calls": [tool(1, arguments='"Lisbon"}')]}),
        chunk({"tool_calls": [tool(2, id="v2", type="function", name="search_pages",
                                   arguments='{"query":"x"}')]}),
        chunk({"tool_calls": [tool(3, id="c2", type="function", name="clock", arguments="")]}),
        chunk({"tool_calls": [tool(3, arguments="{}")]}),
        chunk({}, finish="tool_calls"),
    ])
    tool_deltas = [d for c in out for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert tool_deltas == [
        {"index": 0, "id": "c1", "type": "function",
         "function": {"name": "weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"city":'}},
        {"index": 0, "function": {"arguments": '"Lisbon"}'}},
        {"index": 1, "id": "c2", "type": "function", "function": {"name": "clock",
                                                                   "arguments": ""}},
        {"index": 1, "function": {"arguments": "{}"}},
    ]
    result = s.outcome()
    assert [c["id"] for c in result.vm_calls] == ["v1", "v2"]
    assert [c["id"] for c in result.client_calls] == ["c1", "c2"]
    assert s.next_client_tool_index == 2
    view = client_view([*out, s.finish_chunk("tool_calls")])
    assert [(c["id"], c["function"]["arguments"]) for c in view.tool_calls] == [
        ("c1", '{"city":"Lisbon"}'), ("c2", "{}")]


def test_mistral_no_index_whole_calls_in_one_delta() -> None:
    s = splitter()
    out = run(s, [chunk({"role": "assistant", "content": "", "tool_calls": [
        {"id": "m1", "function": {"name": "page_fault", "arguments": '{"page_id":"msg_2"}'}},
        {"id": "m2", "function": {"name": "weather", "arguments": '{"city":"Porto"}'}},
    ]}, finish="tool_calls", usage={"prompt_tokens": 5, "completion_tokens": 5,
                                    "total_tokens": 10})])
    assert [c["choices"][0]["delta"] for c in out] == [{
        "role": "assistant", "content": None,
        "tool_calls": [{"index": 0, "id": "m2", "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Porto"}'}}]}]
    assert out[0]["choices"][0]["finish_reason"] is None
    assert s.outcome().usage == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


def test_index_starting_at_one_after_text() -> None:
    s = splitter()
    out = run(s, [
        chunk({"role": "assistant", "content": "Checking."}),
        chunk({"tool_calls": [tool(1, id="toolu_1", type="function", name="weather",
                                   arguments="")]}),
        chunk({"tool_calls": [tool(1, arguments="{}")]}),
        chunk({}, finish="stop"),
    ])
    view = client_view([*out, s.finish_chunk(s.outcome().finish_reason or "stop")])
    assert view.content == "Checking."
    assert [(c["id"], c["function"]["name"]) for c in view.tool_calls] == [("toolu_1", "weather")]
    assert out[1]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert s.outcome().finish_reason == "tool_calls"


def test_name_arriving_late_is_held_then_sent_with_arguments_so_far() -> None:
    s = splitter()
    out = run(s, [
        chunk({"role": "assistant", "tool_calls": [tool(0, id="c", arguments='{"a"')]}),
        chunk({"tool_calls": [tool(0, name="weather", arguments=":1}")]}),
    ])
    deltas = [d for c in out for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas == [{"index": 0, "id": "c", "type": "function",
                       "function": {"name": "weather", "arguments": '{"a":1}'}}]


def test_client_call_with_null_arguments_gets_empty_object_at_end() -> None:
    s = splitter()
    streamed_chunks = [s.feed(chunk({"tool_calls": [
        {"index": 0, "id": "0", "type": "function",
         "function": {"name": "llm_version", "arguments": None}}]}))]
    tail = s.end()
    assert tail[0]["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
    assert s.end() == []
    view = client_view([*streamed_chunks[0], *tail])
    assert view.tool_calls[0]["function"]["arguments"] == "{}"


def test_role_repeated_upstream_is_sent_once_and_fields_stripped() -> None:
    s = splitter(include_usage=True)
    out = run(s, [
        chunk({"role": "assistant", "content": "a", "tool_calls": None}, provider="Novita"),
        chunk({"role": "assistant", "content": "b", "tool_calls": []}),
        chunk({"role": None, "content": "c"}),
    ])
    assert roles(out) == ["assistant"]
    assert [c["choices"][0]["delta"] for c in out] == [
        {"role": "assistant", "content": "a"}, {"content": "b"}, {"content": "c"}]
    assert all(c["usage"] is None and "provider" not in c for c in out)
    assert list(out[0]) == ["id", "object", "created", "model", "choices", "usage"]


def test_azure_placeholder_usage_only_and_error_chunks_are_not_forwarded() -> None:
    s = splitter()
    placeholder = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                   "prompt_filter_results": [{"prompt_index": 0}]}
    assert s.feed(placeholder) == []
    assert s.feed({"choices": [], "usage": {"prompt_tokens": 1}}) == []
    assert s.feed({"error": {"message": "boom", "code": 500}}) == []
    assert s.outcome().error == {"message": "boom", "code": "500", "type": "server_error",
                                 "param": None}
    first = s.feed(chunk({"role": "assistant", "content": "x"}, model="real-model"))
    assert first[0]["model"] == "real-model" and first[0]["id"] == STREAM_ID


def test_reasoning_and_vendor_fields_ride_along() -> None:
    s = splitter(first_iteration=False, model="m")
    out = run(s, [
        chunk({"reasoning": "hmm", "channel": "analysis"}),
        chunk({"channel": "analysis"}),
        chunk({"reasoning_content": "deep", "content": None}),
    ])
    assert [c["choices"][0]["delta"] for c in out] == [
        {"reasoning": "hmm", "channel": "analysis"}, {"reasoning_content": "deep"}]


def test_citations_are_stripped_across_chunks() -> None:
    stripper = CitationStripper()
    s = splitter(citations=stripper)
    out = run(s, [
        chunk({"role": "assistant", "content": "You live in Lisbon [re"}),
        chunk({"content": "f: msg_"}),
        chunk({"content": "12]. Also [x"}),
    ])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in out)
    assert text == "You live in Lisbon. Also [x"
    assert stripper.ids == ["msg_12"]
    result = s.outcome()
    assert result.content == "You live in Lisbon [ref: msg_12]. Also [x"
    assert result.forwarded_content == text


def test_two_iterations_on_one_client_stream_through_the_sdk() -> None:
    first = splitter()
    stream: list[dict[str, Any]] = run(first, [
        chunk({"role": "assistant", "content": "One moment. "}, id="up-1", model="gpt-x-1"),
        chunk({"tool_calls": [tool(0, id="v", type="function", name="page_fault",
                                   arguments='{"page_id":"msg_5"}')]}, id="up-1"),
        chunk({}, finish="tool_calls", id="up-1"),
    ])
    assert first.outcome().vm_calls
    second = splitter(first_iteration=not first.role_sent, model=first.model,
                      next_client_tool_index=first.next_client_tool_index)
    stream += run(second, [
        chunk({"role": "assistant", "content": ""}, id="up-2", model="gpt-x-2"),
        chunk({"content": "You live in Lisbon."}, id="up-2"),
        chunk({}, finish="stop", id="up-2"),
    ])
    stream.append(second.finish_chunk("stop"))
    stream.append(second.usage_chunk({"total_tokens": 9, "prompt_tokens": 5,
                                      "completion_tokens": 4}))
    assert roles(stream) == ["assistant"]
    assert {c["id"] for c in stream} == {STREAM_ID}
    assert {c["model"] for c in stream} == {"gpt-x-1"}
    assert list(stream[-1]["usage"]) == ["prompt_tokens", "completion_tokens", "total_tokens"]

    body = b"".join(encode_data(c) for c in stream) + DONE

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(api_key="k", base_url="http://proxy.test/v1",
                           http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    received = list(client.chat.completions.create(model="x", messages=[], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text == "One moment. You live in Lisbon."
    finishes = [c.choices[0].finish_reason for c in received if c.choices]
    assert [f for f in finishes if f] == ["stop"]
    assert received[-1].usage is not None and received[-1].usage.total_tokens == 9


# --- every recorded stream ----------------------------------------------------------------


def split_recording(rec: Recording, vm: set[str]) -> tuple[list[dict[str, Any]], StreamSplitter]:
    s = splitter(vm=vm)
    out: list[dict[str, Any]] = []
    for event in events_of(rec.body):
        out.extend(s.feed_event(event))
    out.extend(s.end())
    return out, s


@pytest.mark.parametrize("rec", streamed(), ids=lambda r: r.name)
def test_recording_without_vm_tools_reaches_client_whole(rec: Recording) -> None:
    upstream, _ = assemble_stream(rec.body)
    out, s = split_recording(rec, set())
    result = s.outcome()
    finish = result.finish_reason or "stop"
    view = client_view([*out, s.finish_chunk(finish)])
    assert view.content == upstream.content or (not view.content and not upstream.content)
    assert view.tool_calls == upstream.tool_calls
    assert view.reasoning == upstream.reasoning
    assert roles(out + [s.finish_chunk(finish)]) == ["assistant"]
    assert {c["id"] for c in out} <= {STREAM_ID}
    assert result.client_calls == upstream.tool_calls and result.vm_calls == []


@pytest.mark.parametrize("rec", [r for r in streamed() if b'"tool_calls":[{' in r.body],
                         ids=lambda r: r.name)
def test_recording_with_its_tools_as_vm_tools_shows_no_calls(rec: Recording) -> None:
    upstream, _ = assemble_stream(rec.body)
    names = {c["function"]["name"] for c in upstream.tool_calls}
    out, s = split_recording(rec, names)
    assert all("tool_calls" not in c["choices"][0]["delta"] for c in out)
    assert s.outcome().vm_calls == upstream.tool_calls
    assert s.outcome().client_calls == []


def test_the_role_chunk_says_text_or_tools_as_openai_streams_them() -> None:
    """An iteration of text sends the role at once, `content: ""` (OpenAI's first chunk of
    text); one of the client's tool calls sends it with the call, `content: null`; one
    whose first chunk only says `content: null` sends nothing until then."""
    text = splitter()
    first = run(text, [chunk({"role": "assistant", "content": ""})])
    assert [c["choices"][0]["delta"] for c in first] == [{"role": "assistant", "content": ""}]
    tools = splitter()
    assert run(tools, [chunk({"role": "assistant", "content": None})]) == []
    out = run(tools, [
        chunk({"tool_calls": [tool(0, id="c1", type="function", name="weather",
                                   arguments="")]}),
        chunk({"tool_calls": [tool(0, arguments="{}")]}),
    ])
    deltas = [c["choices"][0]["delta"] for c in out]
    assert deltas[0] == {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "c1", "type": "function",
         "function": {"name": "weather", "arguments": ""}}]}
    assert all("role" not in d for d in deltas[1:])
    silent = splitter()
    assert run(silent, [chunk({"role": "assistant", "content": None})]) == []
    later = run(silent, [chunk({"content": "Hi"})])
    assert [c["choices"][0]["delta"] for c in later] == [{"role": "assistant", "content": "Hi"}]
