"""A resent Responses history read once (proxy.http.resent): a request that repeats its last
one's bytes and adds items gives what parsing it whole gives (body, messages, fingerprints
and errors alike), whatever the client's formatting and field order; what the splice
cannot be sure of is parsed whole."""

from __future__ import annotations

import itertools
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import InvalidRequest
from proxy.http import responses_validation
from proxy.http.resent import ResentBodies
from proxy.http.responses_validation import (
    RESENT_INPUT,
    parse_responses_request,
    validate_responses_request,
)
from proxy.http.validation import parse_json_object
from proxy.loop.prefix_cache import Fingerprinted
from tests.support.whole_parses import WholeParses

CALL = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f",
        "arguments": "{\"input\": 1}"}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"}
REASONING = {"id": "rs_1", "type": "reasoning", "summary": []}
TOOLS = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]


def said(text: str, number: int) -> dict[str, Any]:
    """An answer as the API gives it and a client resends it."""
    return {"id": f"msg_{number}", "type": "message", "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


# What follows a user message in a turn: the model's answer, perhaps after a tool call.
ANSWERS = st.sampled_from([
    [said("Noted.", 1)],
    [{"role": "assistant", "content": "plain"}],
    [REASONING, CALL, OUTPUT, said("Sunny it is.", 2)],
    [CALL, OUTPUT],
    [],
])
TEXTS = st.sampled_from(["hi", "more", "é ünïcode", "quote \" and \\ back", "\"input\": 1"])


def serialize(body: dict[str, Any], style: str) -> bytes:
    """A body as different clients write it."""
    if style == "compact":
        return orjson.dumps(body)
    if style == "spaced":  # json.dumps's own separators (httpx's `json=`)
        return json.dumps(body).encode()
    if style == "pretty":
        return json.dumps(body, indent=2).encode()
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def body_of(fields: list[str], items: list[Any], **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"model": "gpt-4o", "input": items,
                              "instructions": "Be brief.", "tools": TOOLS,
                              "metadata": {"k": "v"}, **extra}
    return {name: values[name] for name in fields if name in values} | {
        k: v for k, v in extra.items() if k not in fields}


def whole(raw: bytes) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    body = parse_json_object(raw)
    return body, validate_responses_request(body)


def assert_same(raw: bytes, resent: ResentBodies, tenant: str = "t") -> None:
    body, messages = parse_responses_request(raw, resent=resent, tenant=tenant)
    expected_body, expected = whole(raw)
    assert body == expected_body
    assert list(body) == list(expected_body)
    assert messages == expected
    assert type(messages) is type(expected)
    if isinstance(expected, Fingerprinted):
        assert messages.fingerprints == expected.fingerprints  # type: ignore[union-attr]


FIELD_ORDERS = [
    ["model", "instructions", "input"],  # input last (benchmarks/responses_turn.py)
    ["input", "model", "instructions", "tools", "metadata"],  # the openai SDK's order
    ["model", "input", "tools"],
]


@settings(max_examples=300, deadline=None)
@given(
    turns=st.lists(st.tuples(TEXTS, ANSWERS), min_size=1, max_size=8),
    fields=st.sampled_from(FIELD_ORDERS),
    style=st.sampled_from(["compact", "spaced", "pretty", "unicode"]),
    changes=st.lists(st.sampled_from(["next", "next", "again", "stream", "edit", "tool"]),
                     min_size=1, max_size=8),
)
def test_a_continued_request_reads_as_a_whole_one(
    turns: list[tuple[str, list[Any]]], fields: list[str], style: str, changes: list[str]
) -> None:
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    items: list[Any] = []
    extra: dict[str, Any] = {}
    turn = itertools.cycle(turns)
    for change in changes:
        if change == "next":  # the answer and the next question
            text, answer = next(turn)
            items = [*items, *answer, {"role": "user", "content": text}]
        elif change == "stream":  # a field after the items changes
            extra = {} if extra else {"stream": True}
        elif change == "edit" and items:  # an earlier message edited: a fork
            items = [{"role": "user", "content": "edited"}, *items[1:]]
        elif change == "tool":  # an agent's tool call and its result, sent back at once
            items = [*items, CALL, OUTPUT]
        if not items:
            items = [{"role": "user", "content": "first"}]
        assert_same(serialize(body_of(fields, items, **extra), style), resent)


def conversation(turns: int) -> list[list[Any]]:
    """The input of each request of a conversation resending its history."""
    items: list[Any] = []
    bodies = []
    for i in range(turns):
        items = [*items, {"role": "user", "content": f"question {i}"}]
        bodies.append(items)
        items = [*items, said(f"answer {i}", i)]
    return bodies


def test_a_conversation_is_parsed_whole_twice_then_only_its_new_items(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parses = WholeParses(monkeypatch, responses_validation)
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    for items in conversation(6):
        assert_same(orjson.dumps({"model": "gpt-4o", "input": items}), resent)
    # The first request's, then none (the second checks what the first remembered).
    assert parses.count == 1
    assert len(resent) == 1  # one conversation, its last request


@pytest.mark.parametrize(
    ("resent", "turns"),
    [
        (ResentBodies(RESENT_INPUT), 10),  # at most 19 items, below MIN_ITEMS
        # server.resent_bodies_mb = 0
        (ResentBodies(RESENT_INPUT, max_bytes=0, min_items=1), 4),
    ],
    ids=["short histories", "no room"],
)
def test_none_are_remembered(resent: ResentBodies, turns: int) -> None:
    for items in conversation(turns):
        assert_same(orjson.dumps({"model": "gpt-4o", "input": items}), resent)
    assert len(resent) == 0


def test_another_tenant_sending_the_same_bytes_parses_them_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    first, second = conversation(2)
    assert_same(orjson.dumps({"model": "m", "input": first}), resent, tenant="a")
    parses = WholeParses(monkeypatch, responses_validation)
    assert_same(orjson.dumps({"model": "m", "input": second}), resent, tenant="b")
    assert parses.count == 1


def test_conversations_that_begin_alike_are_each_remembered() -> None:
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    one = conversation(4)
    other = [[*items[:1], *[{**i, "content": "other"} if i.get("role") == "user" else i
                            for i in items[1:]]] for items in one]
    for a, b in zip(one, other, strict=True):
        assert_same(orjson.dumps({"model": "m", "input": a}), resent)
        assert_same(orjson.dumps({"model": "m", "input": b}), resent)
    assert len(resent) == 2


def test_remembered_bodies_are_bounded_in_bytes() -> None:
    resent = ResentBodies(RESENT_INPUT, max_bytes=4_000, min_items=1)
    for n in range(20):
        items = [{"role": "user", "content": f"conversation {n} " + "x" * 200}]
        assert_same(orjson.dumps({"model": "m", "input": items}), resent)
    assert 0 < len(resent) < 20


@pytest.mark.parametrize("bad, param", [
    ({"type": "function_call", "call_id": "c"}, "input[3].name"),
    ({"role": "robot", "content": "x"}, "input[3].role"),
    ({"role": "user", "content": [{"type": "input_text", "text": 1}]},
     "input[3].content[0].text"),
])
def test_a_bad_new_item_is_refused_as_a_whole_parse_refuses_it(
    bad: dict[str, Any], param: str
) -> None:
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    first, second = conversation(2)
    for items in (first, second):  # the first remembered, the second checked and kept
        assert_same(orjson.dumps({"model": "m", "input": items}), resent)
    raw = orjson.dumps({"model": "m", "input": [*second, bad]})
    with pytest.raises(InvalidRequest) as whole_error:
        whole(raw)
    with pytest.raises(InvalidRequest) as continued:
        parse_responses_request(raw, resent=resent, tenant="t")
    assert whole_error.value.param == continued.value.param == param


def test_fields_are_checked_in_the_order_a_whole_parse_checks_them() -> None:
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    first, second = conversation(2)
    for items in (first, second):
        assert_same(orjson.dumps({"model": "m", "input": items}), resent)
    bad = {"type": "function_call", "call_id": "c"}
    for fields, param in (({"stream": "yes"}, "stream"), ({"tool_choice": 3}, "input[3].name")):
        raw = orjson.dumps({"model": "m", "input": [*second, bad], **fields})
        with pytest.raises(InvalidRequest) as continued:
            parse_responses_request(raw, resent=resent, tenant="t")
        assert continued.value.param == param


def test_a_broken_continuation_gets_the_whole_parse_s_error() -> None:
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    first, second = conversation(2)
    for items in (first, second):
        assert_same(orjson.dumps({"model": "m", "input": items}), resent)
    raw = orjson.dumps({"model": "m", "input": second})[:-2] + b',{"role":'
    with pytest.raises(InvalidRequest) as continued:
        parse_responses_request(raw, resent=resent, tenant="t")
    assert continued.value.code == "invalid_json"


def test_a_field_hidden_among_the_items_is_never_taken_for_items() -> None:
    # `"tools"` twice: the first, among the items' bytes, is overridden by the second.
    # Spliced around, the bytes between the items' brackets would read as items; the
    # whole parse, which the splice must equal, reads them otherwise.
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    head = b'{"model":"m","input":[{"role":"user","content":"a"}'
    hidden = b'],"tools":[{"role":"user","content":"b"}'
    tail = b'],"tools":[]}'
    more = b',{"role":"user","content":"c"}'
    for raw in (head + hidden + tail, head + hidden + more + tail,
                head + hidden + more + more + tail):
        assert_same(raw, resent)


def test_a_second_input_field_is_parsed_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    first, second = conversation(2)
    assert_same(orjson.dumps({"model": "m", "input": first}), resent)
    assert_same(orjson.dumps({"model": "m", "input": second}), resent)
    raw = orjson.dumps({"model": "m", "input": [*second, said("x", 9),
                                                {"role": "user", "content": "y"}]})
    doubled = raw[:-1] + b',"input":"only this"}'
    assert_same(doubled, resent)


def test_an_agent_s_tool_results_keep_the_turn_they_go_on_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A request ending with a tool's result cannot be gone on from (what follows may join
    # it); the one ending with the user's message it continues stays remembered instead.
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    first, second = conversation(2)
    assert_same(orjson.dumps({"model": "m", "input": first}), resent)
    assert_same(orjson.dumps({"model": "m", "input": second}), resent)
    parses = WholeParses(monkeypatch, responses_validation)
    called = [*second, CALL, OUTPUT]
    answered = [*called, said("Sunny.", 5), {"role": "user", "content": "thanks"}]
    for items in (called, answered):
        assert_same(orjson.dumps({"model": "m", "input": items}), resent)
    assert parses.count == 0


def test_the_field_repeated_under_an_escaped_name_is_parsed_whole() -> None:
    # `"\u0069nput"` is `input` too: the last one counts, which the splice would miss.
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    first, second = conversation(2)
    assert_same(orjson.dumps({"model": "m", "input": first}), resent)
    assert_same(orjson.dumps({"model": "m", "input": second}), resent)
    more = [*second, said("x", 9), {"role": "user", "content": "y"}]
    raw = orjson.dumps({"model": "m", "input": more})[:-1]
    for again in (b'[{"role":"user","content":"only this"}]', orjson.dumps(more[len(second):])):
        assert_same(raw + b',"\\u0069nput":' + again + b"}", resent)


def test_an_answer_that_a_later_item_joins_is_never_gone_on_from() -> None:
    # A plain assistant message after a tool call is joined to it, and to an assistant
    # message after it: a request ending with it cannot be the start of the next one's.
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    first, second = conversation(2)
    for items in (first, second, [*second, CALL, {"role": "assistant", "content": "x"}],
                  [*second, CALL, {"role": "assistant", "content": "x"},
                   {"role": "assistant", "content": "y"}]):
        assert_same(orjson.dumps({"model": "m", "input": items}), resent)


def test_a_regenerate_is_remembered_once_and_nothing_is_left_behind() -> None:
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    _, second = conversation(2)
    raw = orjson.dumps({"model": "m", "input": second})
    for _ in range(3):
        assert_same(raw, resent)
    assert len(resent) == 1
    # Items that hide a duplicate field are forgotten once found out, their bucket too.
    resent = ResentBodies(RESENT_INPUT, min_items=1)
    user = orjson.dumps({"role": "user", "content": "a" * 80})
    for n in range(20):
        hidden = (b'{"model":"m%d","z":1,"input":[' % n + user + b'],"z":1,'
                  b'"\\u0069nput":[' + user + b"]}")
        assert_same(hidden, resent)
        assert_same(hidden[:-2] + b',{"role":"user","content":"c"}]}', resent)
    assert len(resent._buckets) == len(resent) <= 20
