"""The aiohttp side of the upstream client: one pooled session, and its responses as the
`proxy.upstream.client.Reply` the rest of the proxy reads.

httpx's own pool (httpcore) loses most of its throughput at high concurrency
(encode/httpx#3215): a bare passthrough carries roughly a tenth of what the same one with
aiohttp carries. So the socket work is aiohttp's, and failures are mapped to the httpx
exceptions the rest of the proxy handles (502/504).

Bodies are never decompressed on the way: the bytes and the `Content-Encoding` header stay
together, so a pass-through relays exactly what the upstream sent, and only where the proxy
itself reads a body is it decoded (with httpx's decoders: `read_decoded`, `aiter_decoded`).
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import aiohttp
import httpx
import yarl

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


def _mapped(exc: BaseException) -> httpx.TransportError:
    for source, target in _ERRORS:
        if isinstance(exc, source):
            return target(str(exc) or type(exc).__name__)
    return httpx.TransportError(str(exc))  # pragma: no cover


def env_proxy_for(url: str) -> str | None:
    """The HTTP(S)_PROXY that applies to `url` (honouring NO_PROXY), read once."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class _RawBody(httpx.AsyncByteStream):
    """A reply's raw body for httpx to decode as it arrives."""

    def __init__(self, reply: AiohttpReply) -> None:
        self._reply = reply

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._reply.aiter_raw():
            yield chunk

    async def aclose(self) -> None:
        await self._reply.aclose()


class AiohttpReply:
    """One aiohttp response as a `proxy.upstream.client.Reply`: status and raw header pairs
    in, the body unread.

    Failures surface as the httpx exceptions the rest of the proxy maps to 502/504.
    """

    __slots__ = ("_response", "status_code", "raw_headers")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.raw_headers: Sequence[tuple[bytes, bytes]] = response.raw_headers

    async def read(self) -> bytes:
        """The whole body as it came (still compressed if it was)."""
        try:
            return await self._response.read()
        except _AIOHTTP_ERRORS as exc:
            raise _mapped(exc) from exc

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        try:
            # iter_any yields whatever has arrived, so SSE events are not held back
            # waiting for a fixed-size chunk to fill.
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _AIOHTTP_ERRORS as exc:
            self._response.close()  # the connection is broken; it must not go back
            raise _mapped(exc) from exc

    @property
    def is_closed(self) -> bool:
        return self._response.closed

    async def read_decoded(self) -> bytes:
        """The whole body with its Content-Encoding undone, as httpx decodes it."""
        raw = await self.read()
        decoded = httpx.Response(
            self.status_code, headers=list(self.raw_headers), stream=httpx.ByteStream(raw)
        )
        return await decoded.aread()

    def aiter_decoded(self) -> AsyncIterator[bytes]:
        """The body as it arrives with its Content-Encoding undone, as httpx decodes it."""
        decoding = httpx.Response(
            self.status_code, headers=list(self.raw_headers), stream=_RawBody(self)
        )
        return decoding.aiter_bytes()

    async def aclose(self) -> None:
        # Deliberately no await: this also runs inside a cancelled task (client went away
        # mid-stream), where an await would be interrupted and the connection leaked.
        # release() returns a finished connection to the pool and closes an unfinished one.
        self._response.release()


class _CallersHeadersOnly(aiohttp.ClientRequest):
    """A request that adds none of aiohttp's automatic headers (Accept, Accept-Encoding,
    User-Agent): a pass-through sends what the client sent. The session also names them in
    `skip_auto_headers`, but aiohttp honours that by building three multidicts and sorting
    the names on every request, about 2% of a pass-through's CPU."""

    def update_auto_headers(self, skip_auto_headers: Iterable[str] | None) -> None:
        pass


class AiohttpTransport:
    """One pooled aiohttp session; `open()` sends a request on it.

    The session is created on first use, inside the running event loop, and closed by
    `aclose()`.
    """

    def __init__(
        self, *, max_connections: int = 1000, keepalive_s: float = 30.0, proxy: str | None = None
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._proxy = proxy
        self._session: aiohttp.ClientSession | None = None

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
            request_class=_CallersHeadersOnly,
            # Not trust_env: it re-reads the environment and ~/.netrc on every request and
            # costs most of the throughput. The proxy is looked up once (env_proxy_for).
            proxy=self._proxy,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    @staticmethod
    def timeout_for(extension: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
        """aiohttp's form of httpx's timeout extension: `pool` bounds the wait for a
        connection, `connect` the connecting, `read` each wait for bytes."""
        return aiohttp.ClientTimeout(
            total=None,
            connect=extension.get("pool"),
            sock_connect=extension.get("connect"),
            sock_read=extension.get("read"),
        )

    async def open(
        self,
        method: str,
        url: str | yarl.URL,
        headers: Iterable[tuple[bytes, bytes]],
        content: bytes | None,
        timeout: aiohttp.ClientTimeout,
    ) -> AiohttpReply:
        """Send one request and return once the status and headers are in.

        `headers` are sent as given, minus what aiohttp derives itself; the caller must
        `aclose()` the reply.
        """
        session = self._session
        if session is None:
            session = self._session = self._open_session()
        sent = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name.lower() not in _SET_BY_AIOHTTP
        ]
        try:
            response = await session.request(
                method,
                url,
                headers=sent,
                data=content,
                allow_redirects=False,
                compress=None,
                timeout=timeout,
            )
        except _AIOHTTP_ERRORS as exc:
            raise _mapped(exc) from exc
        return AiohttpReply(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
