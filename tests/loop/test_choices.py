"""`n > 1` above the threshold: passive (no loop), and every choice reaches the client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.loop.harness import MODEL, has_vm_tools, serve, upstream_cost, vm_message
from tests.loop.history import QUESTION, conversation


class _Body(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


class TwoChoices:
    """An upstream that answers every request with two choices."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        texts = ["First take.", "Second take."]
        if not body.get("stream"):
            return httpx.Response(200, json={
                "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": MODEL,
                "choices": [{"index": i, "message": {"role": "assistant", "content": t},
                             "logprobs": None, "finish_reason": "stop"}
                            for i, t in enumerate(texts)],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
            })
        chunks = [
            {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
             "choices": [{"index": i, "delta": {"role": "assistant", "content": t},
                          "logprobs": None, "finish_reason": "stop"}]}
            for i, t in enumerate(texts)
        ]
        sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              stream=_Body(sse.encode()))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_every_choice_reaches_the_client(stream: bool) -> None:
    upstream = TwoChoices()
    messages = [*conversation(80), {"role": "user", "content": QUESTION}]
    async with serve(upstream, None) as proxy:  # type: ignore[arg-type]
        response = await proxy.raw_chat(
            {"model": MODEL, "messages": messages, "n": 2, "stream": stream}
        )
        settings = proxy.settings
    assert response.status_code == 200
    sent = upstream.requests[0]
    assert len(upstream.requests) == 1 and sent["n"] == 2
    assert vm_message(sent) is not None and not has_vm_tools(sent)  # passive: no loop
    assert upstream_cost(sent, settings) <= settings.vm.context_budget
    assert "stream_options" not in sent  # the client did not ask for a usage chunk
    assert int(response.headers["x-vm-prompt-tokens"]) < int(
        response.headers["x-vm-prompt-tokens-full"])
    if stream:
        assert "First take." in response.text and "Second take." in response.text
    else:
        choices = response.json()["choices"]
        assert [c["message"]["content"] for c in choices] == ["First take.", "Second take."]
