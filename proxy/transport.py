"""An httpx transport that sends requests with aiohttp.

httpx stays the client API (respx and the tests depend on it), but its default pool
(httpcore) loses most of its throughput at high concurrency (encode/httpx#3215): a bare
passthrough carries roughly a tenth of what the same one with aiohttp carries. This
transport hands the socket work to one long-lived `aiohttp.ClientSession`.

Bodies are never decompressed here: the bytes and the `Content-Encoding` header stay
together, so a pass-through relays exactly what the upstream sent and httpx decodes
(`aiter_bytes`, `.json()`) only where the proxy itself reads a body.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import httpx

# aiohttp exceptions → the httpx exception a caller of httpx expects. Most specific first.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (TimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.ClientError, httpx.TransportError),
)


_AIOHTTP_ERRORS = (aiohttp.ClientError, TimeoutError)
# aiohttp derives these from the URL and the body itself (the same values httpx put there);
# passing them along would only cost it a second round of header processing.
_SET_BY_AIOHTTP = frozenset({b"host", b"content-length", b"transfer-encoding"})


def _mapped(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    for source, target in _ERRORS:
        if isinstance(exc, source):
            return target(str(exc) or type(exc).__name__, request=request)
    return httpx.TransportError(str(exc), request=request)  # pragma: no cover


def env_proxy_for(url: str) -> str | None:
    """The HTTP(S)_PROXY that applies to `url` (honouring NO_PROXY), read once."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class AiohttpResponseStream(httpx.AsyncByteStream):
    """The body of one aiohttp response, chunk by chunk as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            # iter_any yields whatever has arrived, so SSE events are not held back
            # waiting for a fixed-size chunk to fill.
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _AIOHTTP_ERRORS as exc:
            self._response.close()  # the connection is broken; it must not go back
            raise _mapped(exc, self._request) from exc

    async def aclose(self) -> None:
        # Deliberately no await: this also runs inside a cancelled task (client went away
        # mid-stream), where an await would be interrupted and the connection leaked.
        # release() returns a finished connection to the pool and closes an unfinished one.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One pooled aiohttp session behind the httpx API.

    The session is created on first use, inside the running event loop, and closed by
    `aclose()` (the httpx client closes its transport).
    """

    def __init__(
        self, *, max_connections: int = 1000, keepalive_s: float = 30.0, proxy: str | None = None
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._proxy = proxy
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=self._keepalive_s,
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            # Credentials and cookies of one client must never ride along with another's.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Only what the caller set is sent: a client that did not ask for compression
            # must not get a gzip body relayed to it.
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Accept"),
            # Not trust_env: it re-reads the environment and ~/.netrc on every request and
            # costs most of the throughput. The proxy is looked up once (env_proxy_for).
            proxy=self._proxy,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    def _timeout(self, extension: dict[str, float | None]) -> aiohttp.ClientTimeout:
        key = (
            extension.get("connect"),
            extension.get("read"),
            extension.get("pool"),
        )
        timeout = self._timeouts.get(key)
        if timeout is None:
            connect, read, pool = key
            timeout = aiohttp.ClientTimeout(
                total=None, connect=pool, sock_connect=connect, sock_read=read
            )
            self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None:
            session = self._session = self._open_session()
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() not in _SET_BY_AIOHTTP
        ]
        data: bytes | httpx.AsyncByteStream | None
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):
            data = b"".join(stream) or None  # in memory already: one piece, no I/O
        else:
            try:
                data = request.content or None
            except httpx.RequestNotRead:
                data = stream  # type: ignore[assignment]
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=data,
                allow_redirects=False,
                compress=None,
                timeout=self._timeout(request.extensions.get("timeout", {})),
            )
        except _AIOHTTP_ERRORS as exc:
            raise _mapped(exc, request) from exc
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=AiohttpResponseStream(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
