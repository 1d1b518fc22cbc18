"""Reading a request body under the size limit (`server.max_body_bytes`)."""

from __future__ import annotations

from starlette.requests import Request

from proxy.errors import InvalidRequest, PayloadTooLarge


def too_large(limit: int) -> PayloadTooLarge:
    # Connection: close tells the server not to read (and discard) the rest of the body
    # just to keep the connection alive.
    return PayloadTooLarge(
        f"The request body is larger than {limit} bytes (server.max_body_bytes).",
        code="request_too_large",
        headers={"connection": "close"},
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it is known to exceed `limit`.

    A declared Content-Length over the limit is refused before any byte is read; a
    chunked body is counted as it arrives and refused at the first byte past the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequest("The Content-Length header is not a number.") from None
        if size > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        if chunk:
            chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
