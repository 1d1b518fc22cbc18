"""A reply forwarded below the threshold is still stored (observe.py), whatever the
upstream's content-encoding."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from proxy.loop.observe import _Decoder
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
