"""Broken upstream replies (issue 13, items 2 and 9): an unfinished stream reaches the
client as an error and is never stored as the assistant's turn; a failed turn leaves no
two user messages in a row; a reply that breaks off is not "could not be reached"."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.http.conftest import completion, edge, settings_with
from tests.loop.harness import parse_sse
from tests.support.fake_upstream import chunk

MEMORY = settings_with(vm={"mode": "strict", "activate_above": 0, "context_budget": 3000,
                           "keepalive_s": 0.05})
FORWARDED = settings_with(vm={"mode": "strict"})
PARTIAL = "The answer is forty"


def sse(*events: dict[str, Any] | bytes) -> bytes:
    return b"".join(
        e if isinstance(e, bytes) else b"data: " + json.dumps(e).encode() + b"\n\n"
        for e in events
    )


class Breaking(httpx.AsyncByteStream):
    """Sends `head`, then fails as a reset connection would."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        raise httpx.ReadError("Connection reset by peer")


CUT = sse(chunk({"role": "assistant", "content": ""}), chunk({"content": PARTIAL}))
UNFINISHED_STREAMS = {
    "clean-end": lambda: httpx.ByteStream(CUT),
    "reset": lambda: Breaking(CUT),
}


class Upstream:
    """Answers the `broken` call (1-based) with `reply`, every other call properly."""

    def __init__(self, broken: int, reply: Callable[[], httpx.Response]) -> None:
        self.broken = broken
        self.reply = reply
        self.calls = 0
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.calls == self.broken:
            return self.reply()
        if body.get("stream"):
            events = sse(chunk({"role": "assistant", "content": f"Answer {self.calls}."}),
                         chunk({}, "stop"), b"data: [DONE]\n\n")
            return httpx.Response(200, stream=httpx.ByteStream(events),
                                  headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=completion(f"Answer {self.calls}."))


def stream_reply(make: Callable[[], httpx.AsyncByteStream]) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(200, stream=make(),
                                  headers={"content-type": "text/event-stream"})


def conversation(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, content) of the user and assistant messages sent upstream."""
    return [(m["role"], str(m.get("content"))) for m in body["messages"]
            if m["role"] in ("user", "assistant")]


async def turn(proxy: Any, text: str, *, stream: bool) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "stream": stream,
            "messages": [{"role": "user", "content": text}]}
    return await proxy.http.post("/v1/chat/completions", json=body, headers={
        "authorization": "Bearer sk-test", "x-vm-session": "s"})


def assert_alternates(pairs: list[tuple[str, str]]) -> None:
    roles = [role for role, _ in pairs]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), roles


@pytest.mark.parametrize("how", UNFINISHED_STREAMS)
@pytest.mark.parametrize("path", ["memory", "forwarded"])
async def test_an_unfinished_stream_is_an_error_and_not_stored(how: str, path: str) -> None:
    upstream = Upstream(2, stream_reply(UNFINISHED_STREAMS[how]))
    async with edge(upstream, MEMORY if path == "memory" else FORWARDED) as proxy:
        assert (await turn(proxy, "First question?", stream=True)).status_code == 200
        response = await turn(proxy, "Second question?", stream=True)
        events = parse_sse(response.text)
        assert all(e.data != "[DONE]" for e in events)
        assert not any(e.json.get("choices", [{}])[0].get("finish_reason")
                       for e in events if e.data and e.data.startswith("{")
                       and e.json.get("choices"))
        if path == "memory":
            errors = [e.json["error"] for e in events if e.data and '"error"' in e.data]
            assert errors and errors[-1]["code"] in ("upstream_stream_incomplete",
                                                     "upstream_reply_broken")
        await turn(proxy, "Third question?", stream=False)
    sent = conversation(upstream.bodies[-1])
    assert not any(PARTIAL in content for _, content in sent)
    assert_alternates(sent)
    assert sent[-1] == ("user", "Third question?")
    assert ("user", "Second question?") not in sent


async def test_an_html_page_is_not_an_empty_answer() -> None:
    page = lambda: httpx.Response(  # noqa: E731
        200, content=b"<html><body>Sign in to the network</body></html>",
        headers={"content-type": "text/html"})
    upstream = Upstream(1, page)
    async with edge(upstream, MEMORY) as proxy:
        response = await turn(proxy, "Hello?", stream=True)
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == "invalid_response"
        assert "text/html" in error["message"]
        await turn(proxy, "Hello again?", stream=False)
    sent = conversation(upstream.bodies[-1])
    assert_alternates(sent)
    assert sent == [("user", "Hello again?")]


@pytest.mark.parametrize("path", ["memory", "forwarded"])
async def test_a_reply_broken_off_is_not_unreachable(path: str) -> None:
    def broken() -> httpx.Response:
        return httpx.Response(200, stream=Breaking(b'{"id": "chatcmpl-1", "choi'),
                              headers={"content-type": "application/json"})

    upstream = Upstream(1, broken)
    async with edge(upstream, MEMORY if path == "memory" else FORWARDED) as proxy:
        response = await turn(proxy, "Hello?", stream=False)
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "could not be reached" not in message
    assert "broke off" in message


async def test_a_failed_turn_leaves_no_two_user_messages_in_a_row() -> None:
    failing = lambda: httpx.Response(  # noqa: E731
        500, json={"error": {"message": "boom", "type": "server_error", "param": None,
                             "code": None}})
    upstream = Upstream(2, failing)
    async with edge(upstream, FORWARDED) as proxy:
        assert (await turn(proxy, "First?", stream=False)).status_code == 200
        assert (await turn(proxy, "Second?", stream=False)).status_code == 500
        assert (await turn(proxy, "Third?", stream=False)).status_code == 200
        # A retry of the failed question is still that question, not a new one.
        upstream.broken = 4
        assert (await turn(proxy, "Fourth?", stream=False)).status_code == 500
        assert (await turn(proxy, "Fourth?", stream=False)).status_code == 200
    assert conversation(upstream.bodies[2]) == [
        ("user", "First?"), ("assistant", "Answer 1."), ("user", "Third?")]
    assert conversation(upstream.bodies[-1]) == [
        ("user", "First?"), ("assistant", "Answer 1."), ("user", "Third?"),
        ("assistant", "Answer 3."), ("user", "Fourth?")]
