"""Which headers cross the proxy: the client's on their way upstream (`forward_headers`)
and the upstream's on their way back (`relay_head`). Pairs are raw bytes, as ASGI and the
transports keep them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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
_CLIENT_CREDENTIALS = frozenset({"authorization", "api-key", "x-api-key"})
# The server sets its own date; upstream cookies are not the client's business.
_NOT_RELAYED = HOP_BY_HOP | {"content-length", "date", "server", "set-cookie", "alt-svc"}
_NOT_RELAYED_RAW = frozenset(name.encode() for name in _NOT_RELAYED)

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
    With `api_key` set, the client's credentials (`Authorization`, `api-key`, `x-api-key`)
    are replaced by it; otherwise they are forwarded untouched.
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

    @property
    def media_type(self) -> bytes:
        """The content type without its parameters (b"" when none was sent)."""
        return self.content_type.partition(b";")[0].strip()

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


def set_headers(raw_headers: list[tuple[bytes, bytes]], headers: Mapping[str, str]) -> None:
    """Set `headers` in `raw_headers` (lower-case names, as `relay_head` makes them), in
    place: each one's earlier values dropped, its value added. One pass for them all, where
    a starlette `MutableHeaders` assignment scans the list once a header (four on every
    short chat); in place, so that a response's `headers` view of the list stays true."""
    added = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers.items()
    ]
    names = {name for name, _ in added}
    raw_headers[:] = [pair for pair in raw_headers if pair[0] not in names] + added


def content_type(raw_headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The media type of a reply, lower-cased, without parameters ("" when absent)."""
    for name, value in raw_headers:
        if name.lower() == b"content-type":
            return value.decode("latin-1").partition(";")[0].strip().lower()
    return ""


# What the memory path passes on of an upstream reply whose body it rewrites: request ids,
# rate limits and `retry-after` (SDKs schedule their retries by it), processing time.
_INFORMATIVE = frozenset({b"x-request-id", b"request-id", b"retry-after", b"retry-after-ms"})
_INFORMATIVE_PREFIXES = (b"x-ratelimit-", b"openai-", b"anthropic-ratelimit-", b"ratelimit")


def informative_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers of an upstream reply that tell the client about the call itself."""
    found: dict[str, str] = {}
    for raw_name, value in raw_headers:
        name = raw_name.lower()
        if name in _INFORMATIVE or name.startswith(_INFORMATIVE_PREFIXES):
            found[name.decode("latin-1")] = value.decode("latin-1")
    return found
