"""The scripted upstream: answers only from what it is shown, and searches then faults in
order when given the VM tools."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from benchmarks.recall.answering import DONT_KNOW
from benchmarks.recall.drive import read_sse
from benchmarks.recall.generate import Conversation, Probe, generate
from benchmarks.recall.scripted_model import (
    ScriptedModel,
    common_prefix,
    prompt_section,
    serialize_prompt,
)

VM_TOOLS = [
    {"type": "function", "function": {"name": "page_fault", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "search_pages", "parameters": {"type": "object"}}},
]


@pytest.fixture(scope="module")
def conversation() -> Conversation:
    return generate(turns=300, seed=5, probes=20)


def _ask(
    messages: list[dict[str, Any]], question: str, tools: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [*messages, {"role": "user", "content": question}],
        "tools": tools or [],
    }


def _developer(conversation: Conversation, mapped: dict[int, int]) -> dict[str, Any]:
    """A VM developer message mapping messages at the given levels (level 0 text only)."""
    manifest = {
        "mapped": [
            {"id": f"msg_{p}", "type": "transcript", "level": lvl, "tokens": 10}
            for p, lvl in mapped.items()
        ],
        "available": [],
        "policy": {},
    }
    blocks = "\n".join(
        f"[msg_{p} {conversation.messages[p]['role']}] {conversation.messages[p]['content']}"
        for p in mapped
    )
    return {
        "role": "developer",
        "content": f"Rules.\n<VM:MANIFEST_JSON>{json.dumps(manifest)}"
        f"</VM:MANIFEST_JSON>\n<VM:CONTEXT>\n{blocks}\n</VM:CONTEXT>",
    }


def _answer(model: ScriptedModel, body: dict[str, Any]) -> dict[str, Any]:
    message, _ = model.respond(body)
    return message


def test_answers_every_probe_when_the_history_is_visible(conversation: Conversation) -> None:
    model = ScriptedModel()
    for probe in conversation.probes:
        message = _answer(model, _ask(conversation.messages, probe.question))
        assert all(v.lower() in message["content"].lower() for v in probe.answers), probe.question
        for stale in probe.stale:
            assert stale not in message["content"]


def test_says_it_does_not_know_without_the_evidence(conversation: Conversation) -> None:
    model = ScriptedModel()
    recent = conversation.messages[-6:]
    while recent[0]["role"] != "user":
        recent = recent[1:]
    for probe in conversation.probes:
        message = _answer(model, _ask([conversation.messages[0], *recent], probe.question))
        assert message["content"] == DONT_KNOW


def test_a_revision_seen_alone_or_with_the_original_wins(conversation: Conversation) -> None:
    probe = next(p for p in conversation.probes if p.kind == "revised")
    texts = [m.get("content") or "" for m in conversation.messages]
    old_at = next(i for i, t in enumerate(texts) if f" is {probe.stale[0]}" in t)
    new_at = probe.evidence[0].position
    model = ScriptedModel()
    both = [conversation.messages[0], conversation.messages[old_at], conversation.messages[new_at]]
    assert probe.answers[0] in _answer(model, _ask(both, probe.question))["content"]
    only_old = [conversation.messages[0], conversation.messages[old_at]]
    assert probe.stale[0] in _answer(model, _ask(only_old, probe.question))["content"]


def _single(conversation: Conversation) -> Probe:
    return next(p for p in conversation.probes if p.kind == "fact")


def test_searches_then_faults_then_answers(conversation: Conversation) -> None:
    probe = _single(conversation)
    (evidence,) = probe.evidence
    model = ScriptedModel()
    history = [_developer(conversation, {1: 0, 2: 0})]
    body = _ask(history, probe.question, VM_TOOLS)

    first = _answer(model, body)
    (call,) = first["tool_calls"]
    assert call["function"]["name"] == "search_pages"
    assert json.loads(call["function"]["arguments"])["query"] == probe.question

    hits = {
        "query": probe.question,
        "results": [
            {"id": "msg_1", "type": "transcript", "hint": "x", "score": 9.0},
            {"id": f"msg_{evidence.position}", "type": "claim", "hint": "y", "score": 5.0},
        ],
    }
    body["messages"] += [
        first,
        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(hits)},
    ]
    second = _answer(model, body)
    (fault,) = second["tool_calls"]
    assert fault["function"]["name"] == "page_fault"
    # msg_1 is already mapped at level 0: the model goes for the next hit
    assert json.loads(fault["function"]["arguments"]) == {
        "page_id": f"msg_{evidence.position}",
        "target_level": 0,
    }

    page = conversation.messages[evidence.position]["content"]
    result = {
        "id": f"msg_{evidence.position}",
        "type": "claim",
        "level": 0,
        "content": page,
        "tokens": 40,
    }
    body["messages"] += [
        second,
        {"role": "tool", "tool_call_id": fault["id"], "content": json.dumps(result)},
    ]
    final = _answer(model, body)
    assert probe.answers[0] in final["content"]
    assert f"[ref: msg_{evidence.position}]" in final["content"]
    assert [e.action for e in model.log] == ["search", "fault", "answer"]


def test_answers_without_tools_when_the_context_already_has_it(conversation: Conversation) -> None:
    probe = _single(conversation)
    model = ScriptedModel()
    body = _ask(
        [_developer(conversation, {probe.evidence[0].position: 0})], probe.question, VM_TOOLS
    )
    assert probe.answers[0] in _answer(model, body)["content"]


def test_gives_up_after_two_faults_and_uses_renamed_tools(conversation: Conversation) -> None:
    probe = _single(conversation)
    renamed = [
        {"type": "function", "function": {"name": f"vm_{t['function']['name']}"}} for t in VM_TOOLS
    ]
    model = ScriptedModel()
    body = _ask([_developer(conversation, {})], probe.question, renamed)
    actions = []
    for _ in range(5):
        message = _answer(model, body)
        if not message.get("tool_calls"):
            break
        (call,) = message["tool_calls"]
        actions.append(call["function"]["name"])
        if call["function"]["name"] == "vm_search_pages":
            content = {
                "query": "q",
                "results": [
                    {"id": f"msg_{i}", "type": "t", "hint": "", "score": 1.0} for i in (3, 4, 5)
                ],
            }
        else:
            content = {
                "id": json.loads(call["function"]["arguments"])["page_id"],
                "type": "t",
                "level": 0,
                "content": "Nothing relevant here.",
                "tokens": 5,
            }
        body["messages"] += [
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(content)},
        ]
    assert actions == ["vm_search_pages", "vm_page_fault", "vm_page_fault"]
    assert message["content"] == DONT_KNOW


def test_manifest_hints_are_not_evidence(conversation: Conversation) -> None:
    probe = _single(conversation)
    manifest = {
        "mapped": [],
        "available": [
            {"id": "msg_9", "type": "claim", "hint": probe.evidence[0].snippet, "tokens": 9}
        ],
        "policy": {},
    }
    developer = {
        "role": "developer",
        "content": f"<VM:MANIFEST_JSON>{json.dumps(manifest)}</VM:MANIFEST_JSON>"
        "<VM:CONTEXT></VM:CONTEXT>",
    }
    message = _answer(ScriptedModel(), _ask([developer], probe.question))
    assert message["content"] == DONT_KNOW


async def test_serves_json_and_sse_over_an_httpx_transport(conversation: Conversation) -> None:
    probe = _single(conversation)
    model = ScriptedModel()
    async with httpx.AsyncClient(transport=model.transport(), base_url="http://up") as client:
        body = _ask(conversation.messages, probe.question)
        plain = (await client.post("/v1/chat/completions", json=body)).json()
        assert plain["usage"]["prompt_tokens"] == model.log[-1].prompt_tokens > 1000
        streamed = await client.post(
            "/v1/chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
        )
        assert streamed.headers["content-type"].startswith("text/event-stream")
        text, problems = read_sse(streamed.text)
        assert problems == "" and text == plain["choices"][0]["message"]["content"]
        assert (
            streamed.text.endswith("data: [DONE]\n\n") and '"choices":[],"usage"' in streamed.text
        )

        calls = await client.post(
            "/v1/chat/completions", json={**_ask([], probe.question, VM_TOOLS), "stream": True}
        )
        chunks = [
            json.loads(line[6:]) for line in calls.text.splitlines() if line.startswith("data: {")
        ]
        arguments = "".join(
            c["choices"][0]["delta"]
            .get("tool_calls", [{}])[0]
            .get("function", {})
            .get("arguments", "")
            for c in chunks
            if c["choices"]
        )
        assert json.loads(arguments)["query"] == probe.question
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
        assert (await client.get("/v1/models")).status_code == 404


def test_scripted_replies_are_returned_verbatim_and_logged() -> None:
    model = ScriptedModel()
    reply = {"role": "assistant", "content": "Sure."}
    model.script(reply)
    message, exchange = model.respond(_ask([], "hello"))
    assert message == reply and exchange.mode == "scripted"
    assert _answer(model, _ask([], "hello"))["content"] == DONT_KNOW


def test_prefix_share_compares_with_the_previous_prompt() -> None:
    assert common_prefix("abcdef", "abcxyz") == 3
    assert common_prefix("", "abc") == 0
    model = ScriptedModel()
    model.respond(_ask([{"role": "system", "content": "s" * 200}], "one"))
    _, second = model.respond(_ask([{"role": "system", "content": "s" * 200}], "two"))
    assert 0.8 < second.prefix_share < 1.0


def test_prompt_sections_name_where_a_prompt_changed() -> None:
    developer = {
        "role": "developer",
        "content": "Rules.<VM:CONTEXT>[msg_1 user] hi</VM:CONTEXT>"
        "<VM:MANIFEST_JSON>{}</VM:MANIFEST_JSON>",
    }
    body = {"tools": VM_TOOLS, "messages": [developer, {"role": "user", "content": "question"}]}
    prompt = serialize_prompt(body)
    where = {
        name: prompt_section(body, prompt.index(marker))
        for name, marker in [("tools", "page_fault"), ("vm head", "Rules"),
                             ("context", "[msg_1"), ("manifest", "{}</VM:MANIFEST"),
                             ("messages", "question")]
    }  # fmt: skip
    assert where == {name: name for name in where}


def _first_fault(model: ScriptedModel, question: str, hits: list[tuple[str, str]]) -> str:
    body = _ask([], question, VM_TOOLS)
    search = _answer(model, body)
    (call,) = search["tool_calls"]
    results = [{"id": i, "type": "transcript", "hint": h, "score": 1.0} for i, h in hits]
    content = json.dumps({"query": question, "results": results})
    body["messages"] += [search, {"role": "tool", "tool_call_id": call["id"], "content": content}]
    (fault,) = _answer(model, body)["tool_calls"]
    return str(json.loads(fault["function"]["arguments"])["page_id"])


def test_hints_steer_the_first_fault_to_the_likely_answer() -> None:
    hits = [("msg_3", "I tried to remember my locker code today and blanked…"),
            ("msg_5", "Quick note: my locker code is 44…"),
            ("msg_9", "Update: my locker code is now 57…")]  # fmt: skip
    question = "What is my locker code?"
    assert _first_fault(ScriptedModel(), question, hits) == "msg_9"
    assert _first_fault(ScriptedModel(), question, hits[:2]) == "msg_5"
    assert _first_fault(ScriptedModel(read_hints=False), question, hits) == "msg_3"
    tool_hits = [("msg_7", "Please pull up invoice INV-1, accounting is asking"),
                 ("msg_9", "get_invoice result: JSON object with keys invoice")]  # fmt: skip
    tool_question = "Which total came back when you looked up invoice INV-1?"
    assert _first_fault(ScriptedModel(), tool_question, tool_hits) == "msg_9"
