"""One client stream over several upstream iterations: the SSE invariants, text streamed
before a VM call, keep-alives while the next iteration is on its way."""

from __future__ import annotations

from typing import Any

from tests.loop.harness import MODEL, parse_sse, serve
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import Call, Calls, ScriptedModel, agent

PREAMBLE = "Let me check my notes first. "


def _request(history: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [*history, {"role": "user", "content": QUESTION}],
            "stream": True, **extra}


def _content(chunk: dict[str, Any]) -> str:
    return "".join(ch["delta"].get("content") or "" for ch in chunk["choices"])


def _data_events(text: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(JSON chunks, raw data strings in order, comments)."""
    events = parse_sse(text)
    chunks = [e.json for e in events if e.data is not None and e.data != "[DONE]"]
    datas = [e.data for e in events if e.data is not None]
    comments = [e.comment or "" for e in events if e.comment is not None]
    return chunks, datas, comments


async def test_one_id_one_role_one_finish_one_done(history: list[dict[str, Any]]) -> None:
    model = ScriptedModel(agent(LOCKER))
    async with serve(model) as proxy:
        response = await proxy.raw_chat(
            _request(history, stream_options={"include_usage": True})
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert model.actions == ["search", "fault", "answer"]
    chunks, datas, _ = _data_events(response.text)
    assert datas.count("[DONE]") == 1 and datas[-1] == "[DONE]"
    assert len({c["id"] for c in chunks}) == 1
    assert len({c["created"] for c in chunks}) == 1
    assert len({c["model"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    choices = [ch for c in chunks for ch in c["choices"]]
    assert sum(1 for ch in choices if "role" in ch["delta"]) == 1
    assert "role" in chunks[0]["choices"][0]["delta"]
    finishes = [ch["finish_reason"] for ch in choices if ch["finish_reason"] is not None]
    assert finishes == ["stop"]
    assert all("tool_calls" not in ch["delta"] for ch in choices)
    text = "".join(ch["delta"].get("content") or "" for ch in choices)
    assert LOCKER_CODE in text
    assert [c for c in chunks if c.get("usage")] == [chunks[-1]]
    assert chunks[-1]["choices"] == []


async def test_text_before_a_vm_call_is_forwarded_and_the_stream_goes_on(
    history: list[dict[str, Any]],
) -> None:
    model = ScriptedModel(agent(LOCKER))
    model.queue(Calls([Call("search_pages", {"query": QUESTION})], text=PREAMBLE))
    async with serve(model) as proxy:
        stream = await proxy.client.chat.completions.create(**_request(history))
        chunks = [chunk async for chunk in stream]
    assert model.actions == ["search", "fault", "answer"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith(PREAMBLE)
    assert text == PREAMBLE + f"Your locker code is {LOCKER_CODE}."
    assert len({c.id for c in chunks}) == 1
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices and
            c.choices[0].finish_reason] == ["stop"]
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage


async def test_keepalive_comments_while_the_next_iteration_is_slow(
    history: list[dict[str, Any]],
) -> None:
    model = ScriptedModel(agent(LOCKER))
    model.delays[1] = 0.4  # the upstream takes its time answering after the search
    async with serve(model) as proxy:
        response = await proxy.raw_chat(_request(history))
    assert model.actions == ["search", "fault", "answer"]
    events = parse_sse(response.text)
    answer_at = next(i for i, e in enumerate(events)
                     if e.data and e.data != "[DONE]" and _content(e.json))
    assert any(e.comment is not None for e in events[:answer_at]), response.text
    chunks, datas, _ = _data_events(response.text)
    assert datas.count("[DONE]") == 1
    assert len({c["id"] for c in chunks}) == 1
    assert LOCKER_CODE in "".join(_content(c) for c in chunks)


async def test_a_turn_without_faults_streams_like_the_upstream() -> None:
    """VM active but nothing to fault: the upstream's text pieces reach the client as they
    were cut, in one stream with the usual framing."""
    model = ScriptedModel(agent(LOCKER))
    history = conversation(80)
    async with serve(model) as proxy:
        response = await proxy.raw_chat(
            {"model": MODEL, "messages": [*history, {"role": "user", "content": "Hello!"}],
             "stream": True}
        )
    assert model.actions == ["answer"]
    assert "<VM:" in str(model.requests[0]["messages"][0]["content"])
    chunks, datas, _ = _data_events(response.text)
    pieces = [ch["delta"]["content"] for c in chunks for ch in c["choices"]
              if ch["delta"].get("content")]
    assert "".join(pieces) == "Noted, thanks (1 words)."
    assert len(pieces) >= 3  # forwarded piece by piece, not re-cut into one
    assert datas[-1] == "[DONE]" and datas.count("[DONE]") == 1
