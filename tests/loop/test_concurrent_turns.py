"""Memory turns of one history sent at once (an evaluation sampling one prompt in parallel,
a double submit): each response names the conversation its own answer is on (the review:
all four were named the first one's, three answers being on forks)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from proxy.store import open_store
from tests.loop.harness import API_KEY, serve, vm_settings
from tests.loop.test_short_chat import reply

LONG = " ".join(f"word{i}" for i in range(400))
HISTORY = [
    {"role": "user", "content": "Remember: " + LONG},
    {"role": "assistant", "content": "Noted."},
    {"role": "user", "content": "What now?"},
]


def said(response: httpx.Response) -> str:
    """The answer's text, of a completion or of a stream's chunks."""
    if response.headers["content-type"].startswith("text/event-stream"):
        return "".join(
            chunk["choices"][0]["delta"].get("content") or ""
            for line in response.text.splitlines() if line.startswith("data: {")
            for chunk in [orjson.loads(line[6:])] if chunk.get("choices")
        )
    return str(response.json()["choices"][0]["message"]["content"])


def numbered_upstream() -> Any:
    """An upstream answering each request with its number, after 20 ms (so that all the
    requests sent at once are placed before any answer), streamed when asked."""
    asked = 0

    async def numbered(request: httpx.Request) -> httpx.Response:
        nonlocal asked
        asked += 1
        text = f"Answer number {asked}."
        await asyncio.sleep(0.02)
        if orjson.loads(request.content).get("stream"):
            chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 1,
                       "model": "gpt-4o", "choices": [{"index": 0, "delta": delta,
                                                       "finish_reason": finish}]}
                      for delta, finish in (({"role": "assistant", "content": text}, None),
                                            ({}, "stop"))]
            events = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
            return httpx.Response(200, content=events + b"data: [DONE]\n\n",
                                  headers={"content-type": "text/event-stream"})
        body = reply(request).json()
        body["choices"][0]["message"]["content"] = text
        return httpx.Response(200, json=body)

    return numbered


async def named_holds(proxy: Any, response: httpx.Response, length: int) -> list[Any]:
    """The messages of the conversation `response` names, which holds `length`."""
    assert response.status_code == 200
    conv_id = response.headers["x-vm-session"]
    conv = await proxy.store.get_conversation(proxy.tenant, conv_id)
    assert conv is not None and conv.length == length
    path = await proxy.store.path(proxy.tenant, conv_id)
    return [p.message for p in await proxy.store.pages_in_range(path, 0, length)
            if p.is_message]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_each_answer_is_named_where_it_is_stored(
    backend: str, stream: bool, tmp_path: Any
) -> None:
    """Streamed, the headers leave before the answer is stored: the turn placed beside
    another goes on a fork of its own from the start."""
    numbered = numbered_upstream()

    url = f"sqlite:///{tmp_path}/store.db" if backend == "sqlite" else "memory://"
    async with serve(numbered, vm_settings(activate_above=200), await open_store(url)) as proxy:
        replies = await asyncio.gather(*(
            proxy.raw_chat({"model": "gpt-4o", "messages": HISTORY, "stream": stream})
            for _ in range(4)
        ))
        for response in replies:
            assert int(response.headers["x-vm-prompt-tokens-full"]) > 200  # memory active
            assert await named_holds(proxy, response, 4) == [
                *HISTORY, {"role": "assistant", "content": said(response)}
            ]
        assert len({r.headers["x-vm-session"] for r in replies}) == 4
        assert len(proxy.app.state.tips) == 0  # every claim released with its response


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_edits_of_one_history_sent_at_once_are_each_named_where_stored(
    backend: str, tmp_path: Any
) -> None:
    """The general path (below the threshold, an edited answer: a fork of the stored
    chat): four requests with the same edited history and different questions at once
    (the review: all four were named the first one's fork)."""
    numbered = numbered_upstream()

    url = f"sqlite:///{tmp_path}/store.db" if backend == "sqlite" else "memory://"
    opening = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Where do we start?"}]
    async with serve(numbered, vm_settings(), await open_store(url)) as proxy:
        first = await proxy.raw_chat({"model": "gpt-4o", "messages": opening})
        assert first.status_code == 200
        edited = [*opening, {"role": "assistant", "content": "An edited answer."}]
        replies = await asyncio.gather(*(
            proxy.raw_chat({"model": "gpt-4o", "messages": [
                *edited, {"role": "user", "content": f"Branch question {n}."}]})
            for n in range(4)
        ))
        for n, response in enumerate(replies):
            assert await named_holds(proxy, response, 5) == [
                *edited, {"role": "user", "content": f"Branch question {n}."},
                {"role": "assistant", "content": said(response)},
            ]
        assert len({r.headers["x-vm-session"] for r in replies}) == 4
        assert len(proxy.app.state.tips) == 0


async def asgi_chat(
    app: Any, body: dict[str, Any], answered: asyncio.Event
) -> dict[str, Any]:
    """One request straight into the app, `answered` set the moment the client has its
    answer's last event ([DONE]), though the app may not be done with the request; the
    status, headers and body."""
    raw = orjson.dumps(body)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"proxy"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    (b"authorization", f"Bearer {API_KEY}".encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8787),
    }
    got: dict[str, Any] = {"body": b""}
    sent = False
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            got["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            got["body"] += message.get("body", b"")
            if b"[DONE]" in got["body"]:
                answered.set()

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
        answered.set()
    return got


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.mark.parametrize("tools", [False, True], ids=["short-path", "general-path"])
async def test_a_chat_whose_client_goes_on_at_done_stays_on_one_conversation(
    tools: bool,
) -> None:
    """A client that sends its next turn as soon as it reads [DONE], while the stream is
    still being closed and the turn not yet stored (its tip still claimed): the next turn
    is the holder's next turn, not a rival, and the chat stays on one conversation (the
    review: every turn went on a fork of its own)."""

    async def closes_late(request: httpx.Request) -> httpx.Response:
        asked = orjson.loads(request.content)["messages"][-1]["content"]
        chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 1,
                   "model": "gpt-4o", "choices": [{"index": 0, "delta": delta,
                                                   "finish_reason": finish}]}
                  for delta, finish in (({"role": "assistant", "content": f"On {asked}"}, None),
                                        ({}, "stop"))]
        events = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)

        async def closing() -> Any:
            yield events + b"data: [DONE]\n\n"
            await asyncio.sleep(0.05)  # the upstream closes its stream after [DONE]

        return httpx.Response(200, content=closing(),
                              headers={"content-type": "text/event-stream"})

    async with serve(closes_late, vm_settings()) as proxy:
        history: list[dict[str, Any]] = []
        running = []
        for k in range(4):
            history = [*history, {"role": "user", "content": f"Question number {k}?"}]
            body: dict[str, Any] = {"model": "gpt-4o", "messages": history, "stream": True}
            if tools:
                body["tools"] = TOOLS
            answered = asyncio.Event()
            running.append(asyncio.create_task(asgi_chat(proxy.app, body, answered)))
            await answered.wait()  # goes on now, the request still running in the app
            history = [*history, {"role": "assistant", "content": f"On Question number {k}?"}]
        outcomes = await asyncio.gather(*running)
        sessions = {o["headers"]["x-vm-session"] for o in outcomes}
        assert len(sessions) == 1  # one conversation, named by every turn
        conv = await proxy.store.get_conversation(proxy.tenant, sessions.pop())
        assert conv is not None and conv.length == 8
        assert len(await proxy.store.list_conversations(tenant=proxy.tenant)) == 1
        assert len(proxy.app.state.tips) == 0


async def test_one_new_chat_opened_at_once_with_long_answers_names_each_where_stored() -> None:
    """Long answers (stored the general way, in slices) of one chat opened four times at
    once: each response names a conversation holding its answer, and no conversation is
    left empty (the review: three named forks stayed empty, the answers on three more)."""
    asked = 0

    async def long_answers(request: httpx.Request) -> httpx.Response:
        nonlocal asked
        asked += 1
        text = f"Answer number {asked}: " + "more words. " * 2_000
        await asyncio.sleep(0.02)
        body = reply(request).json()
        body["choices"][0]["message"]["content"] = text
        return httpx.Response(200, json=body)

    question = [{"role": "user", "content": "Tell me at length."}]
    async with serve(long_answers, vm_settings()) as proxy:
        replies = await asyncio.gather(*(
            proxy.raw_chat({"model": "gpt-4o", "messages": question}) for _ in range(4)
        ))
        for response in replies:
            assert await named_holds(proxy, response, 2) == [
                *question, {"role": "assistant", "content": said(response)}
            ]
        infos = await proxy.store.list_conversations(tenant=proxy.tenant, limit=100)
        assert sorted(i.length for i in infos) == [2, 2, 2, 2]
        assert len(proxy.app.state.tips) == 0
