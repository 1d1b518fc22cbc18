"""A resent chat history read once (proxy.http.resent with the chat dialect): a request that
repeats its last one's bytes and adds messages gives what parsing it whole gives (body,
fingerprints and errors alike), whatever the client's formatting and field order."""

from __future__ import annotations

import itertools
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import InvalidRequest
from proxy.http import validation
from proxy.http.resent import ResentBodies
from proxy.http.validation import (
    RESENT_MESSAGES,
    parse_chat_request,
    parse_json_object,
    validate_chat_request,
)
from proxy.loop.prefix_cache import Fingerprinted, fingerprint_all
from tests.support.whole_parses import WholeParses

CALLS = [{"id": "call_1", "type": "function",
          "function": {"name": "f", "arguments": "{\"messages\": 1}"}}]
# What follows a user message in a turn.
ANSWERS = st.sampled_from([
    [{"role": "assistant", "content": "Noted."}],
    [{"role": "assistant", "content": "Noted.", "refusal": None, "annotations": []}],
    [{"role": "assistant", "content": None, "tool_calls": CALLS},
     {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
     {"role": "assistant", "content": "Sunny it is."}],
    [],
])
USERS = st.sampled_from([
    {"role": "user", "content": "hi"},
    {"role": "user", "content": "é \" \\ \"messages\": 1"},
    {"role": "user", "content": [{"type": "text", "text": "parts"}]},
    {"role": "user", "content": "named", "name": "ann"},
])
FIELD_ORDERS = [
    ["model", "messages"],
    ["messages", "model", "tools", "temperature"],  # the openai SDK's order
    ["model", "messages", "stream"],
]
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def serialize(body: dict[str, Any], style: str) -> bytes:
    if style == "compact":
        return orjson.dumps(body)
    if style == "spaced":
        return json.dumps(body).encode()
    return json.dumps(body, indent=1).encode()


def body_of(fields: list[str], messages: list[Any], **extra: Any) -> dict[str, Any]:
    values = {"model": "gpt-4o", "messages": messages, "tools": TOOLS, "temperature": 0.2,
              "stream": False, **extra}
    return {name: values[name] for name in fields} | {
        k: v for k, v in extra.items() if k not in fields}


def assert_same(raw: bytes, resent: ResentBodies, tenant: str = "t") -> dict[str, Any]:
    body = parse_chat_request(raw, resent, tenant)
    whole = parse_json_object(raw)
    validate_chat_request(whole)
    assert body == whole
    assert list(body) == list(whole)
    messages = body["messages"]
    if isinstance(messages, Fingerprinted):
        assert messages.fingerprints == fingerprint_all(whole["messages"])
    return body


@settings(max_examples=150, deadline=None)
@given(
    turns=st.lists(st.tuples(USERS, ANSWERS), min_size=1, max_size=8),
    fields=st.sampled_from(FIELD_ORDERS),
    style=st.sampled_from(["compact", "spaced", "pretty"]),
    changes=st.lists(st.sampled_from(["next", "next", "again", "stream", "edit"]),
                     min_size=1, max_size=8),
)
def test_a_continued_request_reads_as_a_whole_one(
    turns: list[tuple[dict[str, Any], list[Any]]], fields: list[str], style: str,
    changes: list[str],
) -> None:
    resent = ResentBodies(RESENT_MESSAGES, min_items=1)
    messages: list[Any] = [{"role": "system", "content": "Be brief."}]
    extra: dict[str, Any] = {}
    turn = itertools.cycle(turns)
    for change in changes:
        if change == "next":
            user, answer = next(turn)
            messages = [*messages, user, *answer]
        elif change == "stream":
            extra = {} if extra else {"stream": True}
        elif change == "edit":
            messages = [{"role": "system", "content": "Be terse."}, *messages[1:]]
        assert_same(serialize(body_of(fields, messages, **extra), style), resent)


def test_a_long_history_is_parsed_whole_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parses = WholeParses(monkeypatch, validation)
    resent = ResentBodies(RESENT_MESSAGES)
    messages: list[Any] = [{"role": "system", "content": "Be brief."}]
    for turn in range(40):
        messages = [*messages, {"role": "user", "content": f"question {turn}"}]
        body = assert_same(orjson.dumps({"model": "m", "messages": messages}), resent)
        messages = [*messages, {"role": "assistant", "content": f"answer {turn}"}]
    assert isinstance(body["messages"], Fingerprinted)
    # Below MIN_ITEMS every one; then the first long one alone.
    short = sum(1 for turn in range(40) if 1 + 2 * turn + 1 < resent.min_items)
    assert parses.count == short + 1


def test_a_bad_new_message_is_refused_as_a_whole_parse_refuses_it() -> None:
    resent = ResentBodies(RESENT_MESSAGES, min_items=1)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"}]
    for more in ([], [{"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]):
        messages = [*messages, *more]
        assert_same(orjson.dumps({"model": "m", "messages": messages}), resent)
    raw = orjson.dumps({"model": "m", "messages": [*messages, {"role": "robot"}]})
    with pytest.raises(InvalidRequest) as whole_error:
        validate_chat_request(parse_json_object(raw))
    with pytest.raises(InvalidRequest) as continued:
        parse_chat_request(raw, resent, "t")
    assert whole_error.value.param == continued.value.param == "messages[4].role"


def test_mode_off_requests_are_not_remembered() -> None:
    # (The route passes no ResentBodies in mode off: nobody reads the messages.)
    body = parse_chat_request(orjson.dumps({"model": "m", "messages": [
        {"role": "user", "content": "x"}] * 40}))
    assert type(body["messages"]) is list


def test_one_app_s_many_conversations_are_each_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One tenant (an app's key), one long system prompt, many users at once: their bodies
    # share far more than the bytes they are looked up by.
    resent = ResentBodies(RESENT_MESSAGES, min_items=1)
    system = {"role": "system", "content": "You are the helpdesk of Example Inc. " * 40}
    users = [[system] for _ in range(30)]
    for turn in range(3):
        if turn == 2:
            parses = WholeParses(monkeypatch, validation)
        for n, messages in enumerate(users):
            messages += [{"role": "user", "content": f"user {n} asks {turn}"}]
            assert_same(orjson.dumps({"model": "m", "messages": messages}), resent)
            messages += [{"role": "assistant", "content": f"answer {turn} to {n}"}]
    assert parses.count == 0
    assert len(resent) == 30
    assert resent.hits == 30 * 2  # the second and third turns of each
    assert resent.held_bytes > 30 * 1500  # each body, its system prompt 1,480 characters
