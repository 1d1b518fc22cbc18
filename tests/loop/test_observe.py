"""A reply forwarded below the threshold is still stored (observe.py), whatever the
upstream's content-encoding."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from starlette.types import Message

from proxy.loop.observe import _Decoder, _tee, observe
from proxy.upstream.assemble import AssembledMessage, ChunkAccumulator
from proxy.upstream.relay import RelayedResponse
from tests.loop.harness import MODEL, serve, vm_settings
from tests.loop.history import LOCKER
from tests.loop.scripted import ScriptedModel, agent

SESSION = {"X-VM-Session": "my-chat"}
ROOMY = {"context_budget": 8000, "pin_last_turns": 2}


class _Compressing:
    """The scripted model behind an upstream that compresses its replies, as most providers
    do for a client that accepts gzip (the openai SDK does)."""

    def __init__(self, model: ScriptedModel, encoding: str) -> None:
        self.model, self.encoding = model, encoding

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        reply = await self.model(request)
        headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-length"}
        headers["content-encoding"] = self.encoding
        wbits = 16 + zlib.MAX_WBITS if self.encoding == "gzip" else zlib.MAX_WBITS
        return httpx.Response(
            reply.status_code, headers=headers, stream=_Compressed(reply, wbits)
        )


class _Compressed(httpx.AsyncByteStream):
    """The reply's pieces compressed as they come, flushed after each, so a stream's
    compressed body arrives in many chunks too."""

    def __init__(self, reply: httpx.Response, wbits: int) -> None:
        self.reply, self.wbits = reply, wbits

    async def __aiter__(self) -> AsyncIterator[bytes]:
        packer = zlib.compressobj(wbits=self.wbits)
        async for piece in self.reply.aiter_bytes():
            yield packer.compress(piece) + packer.flush(zlib.Z_SYNC_FLUSH)
        yield packer.flush()


@pytest.mark.parametrize(("encoding", "stream"),
                         [("gzip", False), ("gzip", True), ("deflate", False)])
async def test_compressed_replies_below_the_threshold_are_kept(
    encoding: str, stream: bool
) -> None:
    """Short turns are forwarded untouched; in append mode their answers must still be
    stored, or the next turn's upstream request would lack them."""
    model = ScriptedModel(agent(LOCKER))
    async with serve(_Compressing(model, encoding), vm_settings(**ROOMY)) as proxy:  # type: ignore[arg-type]
        first = await proxy.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello there, first one?"}],
            extra_headers=SESSION, stream=stream,
        )
        if stream:
            answer = "".join([c.choices[0].delta.content or "" async for c in first
                              if c.choices])
        else:
            answer = first.choices[0].message.content
        assert answer == "Noted, thanks (4 words)."
        await proxy.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Second message, still here?"}],
            extra_headers=SESSION,
        )
    body = model.requests[-1]
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "Hello there, first one?"), ("assistant", answer),
        ("user", "Second message, still here?"),
    ]


def test_raw_deflate_is_decoded_too() -> None:
    """Some servers send "deflate" without the zlib wrapper; the first chunk tells."""
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = packer.compress(b'{"id": "x"}') + packer.flush()
    decoder = _Decoder("deflate")
    assert decoder.feed(raw[:3]) + decoder.feed(raw[3:]) + decoder.flush() == b'{"id": "x"}'


_ANSWER = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Stored first."}}],
}
_CHUNKS = [
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":"Stored "}}]}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"content":"first."}}]}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
]


class _Timeline:
    """What the client was sent, and what of it it had when the answer was stored."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.stored: list[tuple[str | None, int]] = []

    async def on_answer(self, message: AssembledMessage) -> None:
        self.stored.append((message.content, len(self.sent)))

    async def send(self, event: Message) -> None:
        if event["type"] == "http.response.body":
            self.sent.append(event.get("body", b""))


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


@pytest.mark.parametrize("store_first", [True, False])
async def test_an_answer_is_stored_before_it_is_sent_when_asked(store_first: bool) -> None:
    """Under a session name the client never resends the answer: once it has it, it is
    stored, or another replica's next turn would miss it (and a crash would lose it)."""
    timeline = _Timeline()
    relayed = RelayedResponse(200, orjson.dumps(_ANSWER), [])
    response = observe(relayed, timeline.on_answer, store_first=store_first)
    await response({"type": "http"}, _nothing, timeline.send)
    assert timeline.sent == [orjson.dumps(_ANSWER)]
    assert timeline.stored == [("Stored first.", 0 if store_first else 1)]


@pytest.mark.parametrize("store_first", [True, False])
async def test_a_stream_is_stored_before_the_chunk_that_finishes_it(store_first: bool) -> None:
    timeline = _Timeline()

    async def upstream() -> AsyncIterator[bytes]:
        for chunk in _CHUNKS:
            yield chunk

    relayed = _tee(upstream(), timeline.on_answer, _Decoder(""), ChunkAccumulator(),
                   store_first)  # fmt: skip
    async for chunk in relayed:
        timeline.sent.append(chunk)
    assert timeline.sent == _CHUNKS
    # Stored when the finish_reason came, before that chunk and [DONE] went out; without
    # store_first, once every chunk was sent.
    assert timeline.stored == [("Stored first.", 2 if store_first else 4)]


async def test_a_stream_cut_before_it_finishes_is_relayed_and_not_stored() -> None:
    timeline = _Timeline()

    async def upstream() -> AsyncIterator[bytes]:
        for chunk in _CHUNKS[:2]:
            yield chunk

    relayed = _tee(upstream(), timeline.on_answer, _Decoder(""), ChunkAccumulator(), True)
    assert [chunk async for chunk in relayed] == _CHUNKS[:2]
    assert timeline.stored == []
