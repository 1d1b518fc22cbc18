"""The client's `previous_response_id` in a relayed answer to a rebuilt request.

Below `vm.activate_above` a request that continues a conversation (`previous_response_id`)
reaches the upstream rebuilt, its input made from the store and without the id, which the
upstream never issued (responses_handler). The upstream's Response echoes the request it
got, `previous_response_id: null`; OpenAI's echoes the client's, as a memory turn's does.
So the relayed answer gets the client's id in that place, and nothing else changes: the
bytes of a body, or of every event of a stream (`response.created`, `.in_progress`,
`.completed`, ... carry the Response), are the upstream's but for that value. (The
request's `instructions` need no such care: the rebuilt request sends them as they came.)

A stream is rewritten line by line (a data line holds a whole event's JSON); a body whose
Content-Encoding is gzip or deflate is sent decoded, one in another encoding as it came.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response

from proxy.logs import log
from proxy.loop.observe import decoded
from proxy.upstream.relay import RelayedResponse, RelayedStream

# The key as a JSON object holds it; inside a JSON string its quotes would be escaped.
_NO_PREVIOUS = re.compile(rb'"previous_response_id"(\s*):(\s*)null')


def echo_previous(response: Response, previous: str) -> Response:
    """`response` (a relayed Responses answer) echoing `previous` as its
    `previous_response_id`."""
    if response.status_code >= 300:
        return response
    value = orjson.dumps(previous)

    def patched(data: bytes) -> bytes:
        return _NO_PREVIOUS.sub(lambda m: b'"previous_response_id"' + m[1] + b":" + m[2]
                                + value, data)

    encoding = _content_encoding(response)
    if isinstance(response, RelayedStream):
        if encoding:
            log.warning("relayed stream not given its previous_response_id: "
                        "content-encoding %r", encoding)
            return response
        response.body_iterator = _lines_patched(response.body_iterator, patched)
        return response
    if isinstance(response, RelayedResponse):
        body = decoded(bytes(response.body), encoding)
        if body is None:
            log.warning("relayed answer not given its previous_response_id: "
                        "content-encoding %r", encoding)
            return response
        headers = [(n, v) for n, v in response.raw_headers
                   if n not in (b"content-encoding", b"content-length")]
        return RelayedResponse(response.status_code, patched(body), headers)
    return response


async def _lines_patched(chunks: AsyncIterable[Any], patched: Any) -> AsyncIterator[Any]:
    """The chunks with `patched` applied to each whole line (a line's end is held back
    until it comes)."""
    held = b""
    async for chunk in chunks:
        if not isinstance(chunk, bytes):
            yield chunk
            continue
        data = held + chunk
        end = data.rfind(b"\n") + 1
        held = data[end:]
        if end:
            yield patched(data[:end])
    if held:
        yield patched(held)


def _content_encoding(response: Response) -> str:
    for name, value in response.raw_headers:
        if name == b"content-encoding":
            encoding = value.decode("latin-1").strip().lower()
            return "" if encoding == "identity" else encoding
    return ""
