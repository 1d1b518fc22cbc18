"""Small builders shared by the wire tests."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.upstream.assemble import AssembledMessage, ChunkAccumulator
from proxy.upstream.sse import SSEDecoder, SSEEvent


def events_of(body: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(body) + decoder.flush()


def chunks_of(body: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of an SSE body (comments and [DONE] left out)."""
    return [orjson.loads(e.data) for e in events_of(body) if not e.is_comment and not e.is_done]


def assemble_stream(body: bytes, *, id_salt: str = "") -> tuple[AssembledMessage, bool]:
    accumulator = ChunkAccumulator(id_salt=id_salt)
    for event in events_of(body):
        accumulator.feed_event(event)
    return accumulator.result(), accumulator.done


def chunk(delta: dict[str, Any] | None = None, *, finish: str | None = None,
          index: int | None = 0, **top: Any) -> dict[str, Any]:
    """An OpenAI-shaped chunk; `index=None` leaves the choice index out."""
    choice: dict[str, Any] = {"delta": delta or {}, "finish_reason": finish}
    if index is not None:
        choice["index"] = index
    body: dict[str, Any] = {"id": "chatcmpl-up", "object": "chat.completion.chunk",
                            "created": 1700000000, "model": "up-model", "choices": [choice]}
    body.update(top)
    return body


def tool(index: int | None = None, *, id: str | None = None, name: str | None = None,
         arguments: str | None = None, type: str | None = None, **extra: Any) -> dict[str, Any]:
    """One tool-call fragment; only the keys given are present (None means absent)."""
    frag: dict[str, Any] = {}
    if index is not None:
        frag["index"] = index
    if id is not None:
        frag["id"] = id
    if type is not None:
        frag["type"] = type
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        frag["function"] = function
    frag.update(extra)
    return frag


def sse(chunks: list[dict[str, Any]], *, done: bool = True) -> bytes:
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")
