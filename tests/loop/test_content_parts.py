"""An upstream answer whose content is a list of parts (Mistral's reasoning models answer so;
the review): its text reaches the client of a memory turn, and the answer is stored as its
client resends it, so that the chat goes on on one conversation."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.loop.harness import serve, vm_settings

TEXT_PARTS = [{"type": "text", "text": "The answer "}, {"type": "text", "text": "is 42."}]
THINKING = {"type": "thinking", "thinking": [{"type": "text", "text": "Let me count."}]}
PARTS = [THINKING, *TEXT_PARTS]


def parts_reply(request: httpx.Request, parts: list[Any] = PARTS) -> httpx.Response:
    body = orjson.loads(request.content)
    if body.get("stream"):
        chunks = [
            {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "magistral",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            for delta, finish in (
                ({"role": "assistant", "content": parts[:1]}, None),
                ({"content": parts[1:2]}, None),
                ({"content": parts[2:]}, None),
                ({}, "stop"),
            )
        ]
        events = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
        return httpx.Response(200, content=events + b"data: [DONE]\n\n",
                              headers={"content-type": "text/event-stream"})
    return httpx.Response(200, json={
        "id": "c1", "object": "chat.completion", "created": 1, "model": "magistral",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": parts}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    })


def text_parts_reply(request: httpx.Request) -> httpx.Response:
    return parts_reply(request, TEXT_PARTS)


@pytest.mark.parametrize("reply", [text_parts_reply, parts_reply], ids=["text", "thinking"])
async def test_a_short_chat_with_answers_in_parts_goes_on_on_one_conversation(
    reply: Any,
) -> None:
    """Resent as received, `thinking` parts included (a part type OpenAI's API does not
    know is the provider's own, passed on: Mistral's API takes them back)."""
    parts = TEXT_PARTS if reply is text_parts_reply else PARTS
    async with serve(reply, vm_settings()) as proxy:
        history: list[dict[str, Any]] = []
        named = set()
        for question in ("First question.", "Second question.", "Third question."):
            history.append({"role": "user", "content": question})
            response = await proxy.raw_chat({"model": "magistral", "messages": history})
            assert response.status_code == 200
            message = response.json()["choices"][0]["message"]
            assert message["content"] == parts  # relayed as the upstream sent it
            history.append(message)  # resent as received, as an SDK resends it
            named.add(response.headers["x-vm-session"])
        assert len(named) == 1  # no turn forked
        conv_id = named.pop()
        conv = await proxy.store.get_conversation(proxy.tenant, conv_id)
        assert conv is not None and conv.length == 6
        path = await proxy.store.path(proxy.tenant, conv_id)
        pages = await proxy.store.pages_in_range(path, 0, 6)
        assert [p.message for p in pages] == history
        assert pages[1].text.split() == ["The", "answer", "is", "42."]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_memory_turn_answered_in_parts_gives_its_text(stream: bool) -> None:
    long = " ".join(f"word{i}" for i in range(400))
    async with serve(parts_reply, vm_settings(activate_above=200)) as proxy:
        body = {"model": "magistral", "stream": stream,
                "messages": [{"role": "user", "content": "Remember: " + long},
                             {"role": "assistant", "content": PARTS},  # resent as it came
                             {"role": "user", "content": "What is the answer?"}]}
        response = await proxy.raw_chat(body)
        assert response.status_code == 200
        assert int(response.headers["x-vm-prompt-tokens-full"]) > 200  # memory was active
        if stream:
            text = "".join(
                (chunk["choices"][0]["delta"].get("content") or "")
                for line in response.text.splitlines()
                if line.startswith("data: {")
                for chunk in [orjson.loads(line[6:])] if chunk.get("choices")
            )
        else:
            text = response.json()["choices"][0]["message"]["content"]
        assert text == "The answer is 42."
