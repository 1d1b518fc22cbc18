"""Sending requests to the upstream API: URLs, header policy, error mapping. No VM logic.

`Upstream` owns the app's one pooled transport and the `httpx.AsyncClient` on it. Every path
it takes is the part after `/v1` (`/chat/completions`), appended to `upstream.base_url`,
which already ends in `/v1` or whatever prefix the provider uses. Header pairs are raw
bytes, as ASGI and httpx keep them. The fault loop gets httpx responses (`post_json`,
`stream`); the pass-through gets a `Reply` (`open`), which on the aiohttp transport is no
httpx object at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Protocol, TypeVar

import httpx
import orjson
import yarl

from proxy.config import UpstreamSettings
from proxy.errors import UpstreamError, UpstreamStatus, UpstreamTimeout, normalise_error_body
from proxy.upstream.transport import AiohttpTransport, env_proxy_for

# RFC 9110 §7.6.1 connection-specific headers, plus what the proxy itself recomputes.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "expect", "cookie"}
_CLIENT_CREDENTIALS = frozenset({"authorization", "api-key"})
# The server sets its own date; upstream cookies are not the client's business.
_NOT_RELAYED = HOP_BY_HOP | {"content-length", "date", "server", "set-cookie", "alt-svc"}
_NOT_RELAYED_RAW = frozenset(name.encode() for name in _NOT_RELAYED)
_URL_CACHE_SIZE = 256

HeaderPairs = list[tuple[bytes, bytes]]
IncomingHeaders = Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]
_NOT_FORWARDED_RAW = frozenset(name.encode() for name in _NOT_FORWARDED)
_CLIENT_CREDENTIALS_RAW = frozenset(name.encode() for name in _CLIENT_CREDENTIALS)


def _raw_pairs(incoming: IncomingHeaders) -> Iterable[tuple[bytes, bytes]]:
    if type(incoming) is list and (not incoming or type(incoming[0][0]) is bytes):
        return incoming  # an ASGI scope's headers (the pass-through's case): raw already
    raw = getattr(incoming, "raw", None)  # starlette's and httpx's Headers keep the bytes
    if isinstance(raw, list):
        return raw
    pairs = incoming.items() if isinstance(incoming, Mapping) else incoming
    return [
        (
            name if isinstance(name, bytes) else name.encode("latin-1"),
            value if isinstance(value, bytes) else value.encode("latin-1"),
        )
        for name, value in pairs
    ]


def forward_headers(incoming: IncomingHeaders, api_key: str = "") -> HeaderPairs:
    """The client's request headers as they go upstream (raw, lower-cased names).

    Hop-by-hop headers, framing, cookies and the proxy's own `X-VM-*` headers stay here.
    With `api_key` set, the client's credentials are replaced by it; otherwise the
    client's `Authorization` (or Azure's `api-key`) is forwarded untouched.
    """
    connection_tokens: set[bytes] = set()
    out: HeaderPairs = []
    for name, value in _raw_pairs(incoming):
        lower = name.lower()
        if lower in _NOT_FORWARDED_RAW or lower.startswith(b"x-vm-"):
            if lower == b"connection":
                connection_tokens.update(t.strip().lower() for t in value.split(b","))
            continue
        if api_key and lower in _CLIENT_CREDENTIALS_RAW:
            continue
        out.append((lower, value))
    if connection_tokens:
        out = [(n, v) for n, v in out if n not in connection_tokens]
    if api_key:
        out.append((b"authorization", b"Bearer " + api_key.encode("latin-1")))
    return out


@dataclass(slots=True)
class RelayHead:
    """The upstream's response headers as they go back to the client, and what the relay
    needs to know, from one pass over the raw pairs (httpx's `headers.get` re-decodes every
    header per call). Content type, request ids, `openai-*`, `x-ratelimit-*`,
    `retry-after(-ms)` and the rest pass; hop-by-hop and framing headers are recomputed by
    the server, and so are those the upstream's `Connection` names."""

    relayed: list[tuple[bytes, bytes]]
    content_type: bytes = b""
    content_length: int | None = None
    encoded: bool = False
    request_id: str | None = None

    @property
    def is_sse(self) -> bool:
        return self.content_type.startswith(b"text/event-stream")

    def decoded(self) -> list[tuple[bytes, bytes]]:
        """The relayed headers of a body sent decoded: without its Content-Encoding."""
        return [(n, v) for n, v in self.relayed if n != b"content-encoding"]


def relay_head(raw_headers: Iterable[tuple[bytes, bytes]]) -> RelayHead:
    head = RelayHead(relayed=[])
    relayed = head.relayed
    named_by_connection: set[bytes] = set()
    for raw_name, value in raw_headers:
        name = raw_name.lower()
        if name in _NOT_RELAYED_RAW:
            if name == b"content-length":
                head.content_length = int(value) if value.isdigit() else None
            elif name == b"connection":  # it may name more hop-by-hop headers
                named_by_connection.update(t.strip().lower() for t in value.split(b","))
            continue
        relayed.append((name, value))
        if name == b"content-type":
            head.content_type = value.lower()
        elif name == b"content-encoding":
            head.encoded = value.strip().lower() not in (b"", b"identity")
        elif name == b"x-request-id":
            head.request_id = value.decode("latin-1")
    named_by_connection -= {b"keep-alive", b"close"}
    if named_by_connection:
        head.relayed = [(n, v) for n, v in relayed if n not in named_by_connection]
    return head


def error_for_transport_failure(exc: httpx.TransportError, base_url: str) -> UpstreamError:
    """Map a failed exchange to 504 (timed out) or 502 (unreachable, broken reply)."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"The upstream at {base_url} timed out ({reason}).")
    return UpstreamError(f"The upstream at {base_url} could not be reached: {reason}.")


def error_from_status(status_code: int, body: bytes) -> UpstreamStatus:
    """The upstream's own 4xx/5xx as a ProxyError carrying its status and its words."""
    error = normalise_error_body(status_code, body)["error"]
    return UpstreamStatus(
        error["message"],
        param=error["param"],
        code=error["code"],
        status_code=status_code,
        error_type=error["type"],
    )


def client_timeout(settings: UpstreamSettings) -> httpx.Timeout:
    # `read` bounds each wait for bytes, so a stream may run long as long as it flows.
    return httpx.Timeout(
        settings.timeout_s,
        connect=settings.connect_timeout_s,
        pool=settings.timeout_s,
    )


def configure_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Strip httpx's default headers and make its cookie jar refuse everything.

    A pass-through sends the client's headers, not httpx's; and a shared jar would carry
    one tenant's upstream cookies into another tenant's requests.
    """
    client.headers = httpx.Headers()
    client.cookies = httpx.Cookies(CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))
    return client


_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    """Cache `value`, unless the cache is full: ids in paths must not grow it forever."""
    if len(cache) < _URL_CACHE_SIZE:
        cache[key] = value
    return value


class Reply(Protocol):
    """An upstream response as the pass-through relays it: status and headers in, the body
    unread. Read it whole (`read`) or chunk by chunk (`aiter_raw`), raw either way (still
    compressed if it came so); `read_decoded` undoes the Content-Encoding. Failures are
    httpx.TransportError. The caller must `aclose()` it."""

    @property
    def status_code(self) -> int: ...

    @property
    def raw_headers(self) -> Sequence[tuple[bytes, bytes]]: ...

    async def read(self) -> bytes: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def read_decoded(self) -> bytes: ...

    async def aclose(self) -> None: ...


class HttpxReply:
    """A `Reply` over an httpx.Response (an injected transport's, e.g. in tests)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.raw_headers: Sequence[tuple[bytes, bytes]] = response.headers.raw

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

    async def aclose(self) -> None:
        await self.response.aclose()


class Upstream:
    """The upstream API behind the proxy.

    It owns one transport (aiohttp-backed unless a test injects one, e.g. a respx router's)
    and an `httpx.AsyncClient` on it for anyone who wants the full client API. Its own
    exchanges go straight to the transport: `AsyncClient.send` adds auth, redirect, cookie
    and hook machinery a pass-through never uses, at about 100 µs a request. The
    pass-through's (`open`) skip httpx altogether on the aiohttp transport.
    """

    def __init__(
        self, settings: UpstreamSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url
        self.transport = transport or AiohttpTransport(
            max_connections=settings.max_connections, proxy=env_proxy_for(settings.base_url)
        )
        timeout = client_timeout(settings)
        self.client = configure_client(
            httpx.AsyncClient(
                transport=self.transport, timeout=timeout, follow_redirects=False, trust_env=False
            )
        )
        self._extensions = {"timeout": timeout.as_dict()}
        self._urls: dict[tuple[str, str], httpx.URL] = {}
        self._aiohttp = self.transport if isinstance(self.transport, AiohttpTransport) else None
        self._aiohttp_timeout = AiohttpTransport.timeout_for(self._extensions["timeout"])
        self._wire_urls: dict[tuple[str, str], yarl.URL] = {}

    async def aclose(self) -> None:
        await self.client.aclose()  # closes the transport too

    def url(self, path: str, query: str = "") -> httpx.URL:
        key = (path, query)
        url = self._urls.get(key)
        if url is None:
            text = self.base_url + path
            url = _remember(self._urls, key, httpx.URL(f"{text}?{query}" if query else text))
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

    async def send(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: HeaderPairs,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Start one exchange and return as soon as the status and headers are in.

        The body is left unread (`aiter_raw` relays it); the caller must close the
        response. `headers` must already be policy-applied (`headers_for`).
        """
        if content is not None:
            # Content-Length by hand and a ByteStream: httpx's `content=` encoding pass
            # costs more than the rest of building the request.
            headers = [*headers, (b"content-length", str(len(content)).encode())]
        request = httpx.Request(
            method,
            self.url(path, query),
            headers=headers,
            stream=httpx.ByteStream(content or b""),
            extensions=self._extensions,
        )
        try:
            response = await self.transport.handle_async_request(request)
        except httpx.TransportError as exc:
            raise error_for_transport_failure(exc, self.base_url) from exc
        response.request = request
        return response

    async def open(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: HeaderPairs,
        content: bytes | None = None,
    ) -> Reply:
        """`send()` for the pass-through: the reply with its body unread.

        On the aiohttp transport no httpx Request or Response is built: together with their
        header normalisation they cost about a fifth of a pass-through's CPU. Raises
        UpstreamError (502) or UpstreamTimeout (504) when no reply could be had.
        """
        transport = self._aiohttp
        if transport is None:
            return HttpxReply(
                await self.send(method, path, query=query, headers=headers, content=content)
            )
        try:
            return await transport.open(
                method, self._wire_url(path, query), headers, content, self._aiohttp_timeout
            )
        except httpx.TransportError as exc:
            raise error_for_transport_failure(exc, self.base_url) from exc

    async def post_json(
        self,
        path: str,
        body: Mapping[str, Any],
        headers: IncomingHeaders,
    ) -> httpx.Response:
        """POST a JSON body and read the whole reply (any status; the caller decides).

        Raises UpstreamError (502) or UpstreamTimeout (504) when no reply could be had.
        """
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                response = await self.send(
                    "POST", path, headers=self._json_headers(headers), content=orjson.dumps(body)
                )
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        except httpx.TransportError as exc:
            raise error_for_transport_failure(exc, self.base_url) from exc
        except TimeoutError:
            raise UpstreamTimeout(
                f"The upstream at {self.base_url} took longer than "
                f"{self.settings.timeout_s:g} s (upstream.timeout_s)."
            ) from None
        return response

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        body: Mapping[str, Any],
        headers: IncomingHeaders,
    ) -> AsyncIterator[httpx.Response]:
        """POST a JSON body and yield the response with its body unread.

        Iterate it with `aiter_bytes()` (decoded) or `aiter_raw()`; a transport failure
        while iterating surfaces as httpx.TransportError (map it with
        `error_for_transport_failure`). The response is closed on exit.
        """
        response = await self.send(
            "POST", path, headers=self._json_headers(headers), content=orjson.dumps(body)
        )
        try:
            yield response
        finally:
            await response.aclose()

    def _json_headers(self, incoming: IncomingHeaders) -> HeaderPairs:
        headers = [
            (n, v)
            for n, v in self.headers_for(incoming)
            if n not in (b"content-type", b"accept-encoding")
        ]
        headers.append((b"content-type", b"application/json"))
        # The proxy reads this body itself; httpx decodes these two.
        headers.append((b"accept-encoding", b"gzip, deflate"))
        return headers
