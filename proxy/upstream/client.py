"""Sending requests to the upstream API: URLs, error mapping, one kind of reply. No VM logic.

`Upstream` owns the app's one pooled aiohttp transport. Every path it takes is the part after
`/v1` (`/chat/completions`), appended to `upstream.base_url`, which already ends in `/v1` or
whatever prefix the provider uses. Every exchange, the pass-through's and the fault loop's,
goes through `open()` and comes back as a `Reply`: status and raw headers in, the body
unread, to be relayed raw or read decoded.

One stack, not two: the reply is aiohttp's own response behind a small protocol, never an
httpx Response. Building httpx's Request and Response objects (with their header
normalisation) costs the pass-through about a fifth of its throughput (measured with
benchmarks/overhead.py: 0.64-0.81 of bare aiohttp instead of 0.86-1.0). httpx is kept for
what it does well elsewhere: its exception classes are the transport errors every layer
maps (502/504), its decoders undo a Content-Encoding where the proxy reads a body, and a
test injects an `httpx.AsyncBaseTransport` (a respx router), whose replies come as
`HttpxReply`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

import httpx
import orjson
import yarl

from proxy.config import UpstreamSettings
from proxy.errors import UpstreamError, UpstreamStatus, UpstreamTimeout, normalise_error_body
from proxy.upstream.headers import (
    HeaderPairs,
    IncomingHeaders,
    forward_headers,
    informative_headers,
)
from proxy.upstream.transport import AiohttpTransport, env_proxy_for

_URL_CACHE_SIZE = 256


def _without(base_query: str, query: str) -> str:
    """`base_query` less the parameters `query` sets itself (a client's own api-version
    wins over the base URL's, not doubled)."""
    if not base_query or not query:
        return base_query
    asked = {_name(part) for part in query.split("&")}
    return "&".join(p for p in base_query.split("&") if _name(p) not in asked)


def _name(parameter: str) -> str:
    return unquote(parameter.partition("=")[0]).lower()


def shown_url(base_url: str) -> str:
    """The base URL as errors name it: without its query, which may hold a key."""
    return base_url.partition("?")[0]


def error_for_transport_failure(
    exc: httpx.TransportError, base_url: str, *, replying: bool = False
) -> UpstreamError:
    """Map a failed exchange to 504 (timed out) or 502 (unreachable, broken reply).
    `replying`: the upstream had answered and its body broke off (it was reached)."""
    reason = str(exc) or type(exc).__name__
    base_url = shown_url(base_url)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"The upstream at {base_url} timed out ({reason}).")
    if replying:
        return UpstreamError(
            f"The upstream at {base_url} broke off its reply before it was complete: "
            f"{reason}.",
            code="upstream_reply_broken",
        )
    return UpstreamError(f"The upstream at {base_url} could not be reached: {reason}.")


def error_from_status(
    status_code: int, body: bytes, raw_headers: Sequence[tuple[bytes, bytes]] = ()
) -> UpstreamStatus:
    """The upstream's own 4xx/5xx as a ProxyError carrying its status, its words and the
    headers that tell the client when to retry (`retry-after`) and which call it was."""
    error = normalise_error_body(status_code, body)["error"]
    return UpstreamStatus(
        error["message"],
        param=error["param"],
        code=error["code"],
        status_code=status_code,
        error_type=error["type"],
        headers=informative_headers(raw_headers),
    )


def client_timeout(settings: UpstreamSettings) -> httpx.Timeout:
    # `read` bounds each wait for bytes, so a stream may run long as long as it flows.
    return httpx.Timeout(
        settings.timeout_s,
        connect=settings.connect_timeout_s,
        pool=settings.timeout_s,
    )


_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    """Cache `value`, unless the cache is full: ids in paths must not grow it forever."""
    if len(cache) < _URL_CACHE_SIZE:
        cache[key] = value
    return value


class Reply(Protocol):
    """An upstream response: status and headers in, the body unread. Read it whole (`read`)
    or chunk by chunk (`aiter_raw`), raw either way (still compressed if it came so), or
    with its Content-Encoding undone (`read_decoded`, `aiter_decoded`). Failures are
    httpx.TransportError. The caller must `aclose()` it."""

    @property
    def status_code(self) -> int: ...

    @property
    def raw_headers(self) -> Sequence[tuple[bytes, bytes]]: ...

    @property
    def is_closed(self) -> bool: ...

    async def read(self) -> bytes: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def read_decoded(self) -> bytes: ...

    def aiter_decoded(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class HttpxReply:
    """A `Reply` over an httpx.Response (an injected transport's, e.g. in tests)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.raw_headers: Sequence[tuple[bytes, bytes]] = response.headers.raw

    @property
    def is_closed(self) -> bool:
        return self.response.is_closed

    async def read(self) -> bytes:
        # The stream itself, not aiter_raw(): a response built with its content (as test
        # handlers do) is already marked read, and its stream still has the raw bytes.
        stream = self.response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        return b"".join([chunk async for chunk in stream])

    def aiter_raw(self) -> AsyncIterator[bytes]:
        return self.response.aiter_raw()

    async def read_decoded(self) -> bytes:
        return await self.response.aread()

    def aiter_decoded(self) -> AsyncIterator[bytes]:
        return self.response.aiter_bytes()

    async def aclose(self) -> None:
        await self.response.aclose()


@dataclass(frozen=True, slots=True)
class WholeReply:
    """A reply read whole: its status, its body (decoded) and its raw headers."""

    status_code: int
    content: bytes
    raw_headers: Sequence[tuple[bytes, bytes]] = ()


class Upstream:
    """The upstream API behind the proxy.

    It owns one transport: aiohttp's, unless a test injects an httpx transport (e.g. a
    respx router's). `open()` is the one exchange; `post_json` and `stream` send the fault
    loop's JSON bodies through it.
    """

    def __init__(
        self, settings: UpstreamSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url
        # A base URL's own query (Azure's `?api-version=...`) goes on every request, after
        # the path, before the request's own query.
        self._base_path, _, self._base_query = settings.base_url.partition("?")
        self._injected = transport
        self._aiohttp = (
            None
            if transport is not None
            else AiohttpTransport(
                max_connections=settings.max_connections,
                proxy=env_proxy_for(settings.base_url),
            )
        )
        timeout = client_timeout(settings)
        self._extensions = {"timeout": timeout.as_dict()}
        self._aiohttp_timeout = AiohttpTransport.timeout_for(self._extensions["timeout"])
        self._urls: dict[tuple[str, str], httpx.URL] = {}
        self._wire_urls: dict[tuple[str, str], yarl.URL] = {}

    async def aclose(self) -> None:
        if self._aiohttp is not None:
            await self._aiohttp.aclose()
        if self._injected is not None:
            await self._injected.aclose()

    def url(self, path: str, query: str = "") -> httpx.URL:
        key = (path, query)
        url = self._urls.get(key)
        if url is None:
            text = self._base_path + path
            joined = "&".join(part for part in (_without(self._base_query, query), query)
                              if part)
            url = _remember(self._urls, key, httpx.URL(f"{text}?{joined}" if joined else text))
        return url

    def _wire_url(self, path: str, query: str) -> yarl.URL:
        """`url()` as aiohttp takes it, parsed once (the same text httpx would send)."""
        key = (path, query)
        url = self._wire_urls.get(key)
        if url is None:
            url = _remember(self._wire_urls, key, yarl.URL(str(self.url(path, query))))
        return url

    def headers_for(self, incoming: IncomingHeaders) -> HeaderPairs:
        return forward_headers(incoming, self.settings.api_key)

    async def open(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: HeaderPairs,
        content: bytes | None = None,
    ) -> Reply:
        """Start one exchange and return as soon as the status and headers are in.

        The body is left unread; the caller must close the reply. `headers` must already be
        policy-applied (`headers_for`). Raises UpstreamError (502) or UpstreamTimeout (504)
        when no reply could be had.
        """
        try:
            if self._aiohttp is not None:
                return await self._aiohttp.open(
                    method, self._wire_url(path, query), headers, content, self._aiohttp_timeout
                )
            return await self._open_injected(method, path, query, headers, content)
        except httpx.TransportError as exc:
            raise error_for_transport_failure(exc, self.base_url) from exc

    async def _open_injected(
        self, method: str, path: str, query: str, headers: HeaderPairs, content: bytes | None
    ) -> Reply:
        assert self._injected is not None
        if content is not None:
            headers = [*headers, (b"content-length", str(len(content)).encode())]
        request = httpx.Request(
            method,
            self.url(path, query),
            headers=headers,
            stream=httpx.ByteStream(content or b""),
            extensions=self._extensions,
        )
        response = await self._injected.handle_async_request(request)
        response.request = request
        return HttpxReply(response)

    async def post_json(
        self,
        path: str,
        body: Mapping[str, Any],
        headers: IncomingHeaders,
    ) -> WholeReply:
        """POST a JSON body and read the whole reply, decoded (any status; the caller
        decides). Raises UpstreamError (502) or UpstreamTimeout (504) when no reply could
        be had.
        """
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                reply = await self._open_json(path, body, headers)
                try:
                    content = await reply.read_decoded()
                except httpx.TransportError as exc:
                    raise error_for_transport_failure(
                        exc, self.base_url, replying=True
                    ) from exc
                finally:
                    await reply.aclose()
        except httpx.TransportError as exc:
            raise error_for_transport_failure(exc, self.base_url) from exc
        except TimeoutError:
            raise UpstreamTimeout(
                f"The upstream at {shown_url(self.base_url)} took longer than "
                f"{self.settings.timeout_s:g} s (upstream.timeout_s)."
            ) from None
        return WholeReply(reply.status_code, content, reply.raw_headers)

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        body: Mapping[str, Any],
        headers: IncomingHeaders,
    ) -> AsyncIterator[Reply]:
        """POST a JSON body and yield the reply with its body unread.

        Iterate it with `aiter_decoded()`; a transport failure while iterating surfaces as
        httpx.TransportError (map it with `error_for_transport_failure`). The reply is
        closed on exit.
        """
        reply = await self._open_json(path, body, headers)
        try:
            yield reply
        finally:
            await reply.aclose()

    async def _open_json(
        self, path: str, body: Mapping[str, Any], incoming: IncomingHeaders
    ) -> Reply:
        headers = [
            (n, v)
            for n, v in self.headers_for(incoming)
            if n not in (b"content-type", b"accept-encoding")
        ]
        headers.append((b"content-type", b"application/json"))
        # The proxy reads this body itself; the reply decodes these two.
        headers.append((b"accept-encoding", b"gzip, deflate"))
        return await self.open("POST", path, headers=headers, content=orjson.dumps(body))
