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
from tests.loop.harness import serve, vm_settings
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
