"""Reading a request body under the size limit (`server.max_body_bytes`)."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from proxy.errors import InvalidRequest, PayloadTooLarge
from proxy.logs import request_stats


def too_large(limit: int) -> PayloadTooLarge:
    # Connection: close tells the server not to read (and discard) the rest of the body
    # just to keep the connection alive.
    return PayloadTooLarge(
        f"The request body is larger than {limit} bytes (server.max_body_bytes).",
        code="request_too_large",
        headers={"connection": "close"},
    )


async def read_body(request: Request, limit: int, *, read: bool = False) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it is known to exceed `limit`.

    A declared Content-Length over the limit is refused before any byte is read; a
    chunked body is counted as it arrives and refused at the first byte past the limit.
    Reads the ASGI messages directly (Starlette's `stream()` adds a generator and a
    headers object per request, on the hottest path the proxy has). `read`: the proxy
    reads the body itself (a JSON request of the two memory routes), so a compressed one
    is refused as such (415), not as a body that is not JSON; relayed, it goes as it came.
    """
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise InvalidRequest("The Content-Length header is not a number.")
            if int(value) > limit:
                raise too_large(limit)
        elif read and name == b"content-encoding" and value.strip().lower() != b"identity":
            raise InvalidRequest(
                f"The request body is encoded ({value.decode('latin-1')}); send it as"
                " plain JSON.", code="unsupported_content_encoding", status_code=415,
            )
    chunks: list[bytes] = []
    total = 0
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit:
                raise too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    request_stats(request.scope).bytes_in = total
    # What Starlette's own body() caches, so a later `await request.body()` still works.
    request._body = body
    return body
