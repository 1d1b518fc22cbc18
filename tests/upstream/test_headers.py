"""Which headers go upstream and which come back, and how failures are named."""

from __future__ import annotations

import httpx
import orjson
import pytest

from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.upstream.client import error_for_transport_failure
from proxy.upstream.headers import forward_headers, relay_head, set_headers
from proxy.upstream.relay import is_openai_error

CLIENT_HEADERS = [
    (b"host", b"proxy.local:8787"),
    (b"authorization", b"Bearer sk-client"),
    (b"content-type", b"application/json"),
    (b"content-length", b"120"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive, x-hop"),
    (b"x-hop", b"only for the next hop"),
    (b"keep-alive", b"timeout=5"),
    (b"transfer-encoding", b"chunked"),
    (b"te", b"trailers"),
    (b"proxy-authorization", b"Basic cHJveHk="),
    (b"cookie", b"session=abc"),
    (b"openai-organization", b"org-1"),
    (b"openai-project", b"proj-1"),
    (b"x-stainless-retry-count", b"0"),
    (b"user-agent", b"AsyncOpenAI/Python 3.57.0"),
    (b"x-vm-session", b"chat-42"),
    (b"x-vm-mode", b"off"),
]


def test_client_headers_forwarded_without_hop_by_hop_framing_or_vm_headers() -> None:
    assert forward_headers(CLIENT_HEADERS) == [
        (b"authorization", b"Bearer sk-client"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"openai-organization", b"org-1"),
        (b"openai-project", b"proj-1"),
        (b"x-stainless-retry-count", b"0"),
        (b"user-agent", b"AsyncOpenAI/Python 3.57.0"),
    ]


def test_configured_key_replaces_the_clients_credentials() -> None:
    headers = [*CLIENT_HEADERS, (b"api-key", b"azure-client-key")]
    forwarded = forward_headers(headers, api_key="sk-upstream")
    assert [v for n, v in forwarded if n in (b"authorization", b"api-key")] == [
        b"Bearer sk-upstream"
    ]


@pytest.mark.parametrize(
    "incoming",
    [
        {"Authorization": "Bearer k", "X-VM-Session": "s", "Content-Type": "text/plain"},
        [("Authorization", "Bearer k"), ("X-VM-Session", "s"), ("Content-Type", "text/plain")],
        httpx.Headers(
            {"Authorization": "Bearer k", "X-VM-Session": "s", "Content-Type": "text/plain"}
        ),
    ],
    ids=["mapping", "str-pairs", "httpx-headers"],
)
def test_every_header_container_gives_the_same_raw_pairs(incoming: object) -> None:
    assert forward_headers(incoming) == [  # type: ignore[arg-type]
        (b"authorization", b"Bearer k"),
        (b"content-type", b"text/plain"),
    ]


UPSTREAM_HEADERS = httpx.Headers(
    [
        ("Content-Type", "application/json"),
        ("Content-Length", "321"),
        ("Content-Encoding", "gzip"),
        ("Connection", "keep-alive, x-internal"),
        ("X-Internal", "hop"),
        ("Transfer-Encoding", "chunked"),
        ("Date", "Tue, 13 May 2025 10:00:00 GMT"),
        ("Server", "cloudflare"),
        ("Set-Cookie", "__cf_bm=abc; path=/"),
        ("Set-Cookie", "_cfuvid=def; path=/"),
        ("x-request-id", "req_123"),
        ("openai-processing-ms", "412"),
        ("openai-organization", "org-1"),
        ("x-ratelimit-remaining-requests", "9999"),
        ("x-ratelimit-reset-tokens", "6ms"),
        ("retry-after", "1"),
        ("retry-after-ms", "1000"),
    ]
)


def test_upstream_headers_relayed_to_the_client() -> None:
    assert relay_head(UPSTREAM_HEADERS.raw).relayed == [
        (b"content-type", b"application/json"),
        (b"content-encoding", b"gzip"),
        (b"x-request-id", b"req_123"),
        (b"openai-processing-ms", b"412"),
        (b"openai-organization", b"org-1"),
        (b"x-ratelimit-remaining-requests", b"9999"),
        (b"x-ratelimit-reset-tokens", b"6ms"),
        (b"retry-after", b"1"),
        (b"retry-after-ms", b"1000"),
    ]


def test_a_decoded_body_goes_back_without_content_encoding() -> None:
    relayed = dict(relay_head(UPSTREAM_HEADERS.raw).decoded())
    assert b"content-encoding" not in relayed
    assert relayed[b"content-type"] == b"application/json"


@pytest.mark.parametrize(
    ("failure", "kind", "status"),
    [
        (httpx.ConnectError("connection refused"), UpstreamError, 502),
        (httpx.RemoteProtocolError("server disconnected"), UpstreamError, 502),
        (httpx.ReadError("connection reset"), UpstreamError, 502),
        (httpx.ConnectTimeout("connect timed out"), UpstreamTimeout, 504),
        (httpx.ReadTimeout("read timed out"), UpstreamTimeout, 504),
        (httpx.PoolTimeout("no free connection"), UpstreamTimeout, 504),
    ],
)
def test_transport_failures_are_502_or_504(
    failure: httpx.TransportError, kind: type[UpstreamError], status: int
) -> None:
    error = error_for_transport_failure(failure, "http://upstream.test/v1")
    assert type(error) is kind
    assert error.status_code == status
    body = error.to_dict()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert "http://upstream.test/v1" in body["message"]
    assert str(failure) in body["message"]


@pytest.mark.parametrize(
    ("body", "shaped"),
    [
        ({"error": {"message": "m", "type": "t", "param": None, "code": None}}, True),
        ({"error": {"message": "m", "type": "t", "param": "model", "code": "c"}}, True),
        ({"error": {"message": "m", "type": "t", "code": None}}, False),  # no param key
        ({"error": {"message": "m", "param": None, "code": "404"}}, False),  # Azure: no type
        ({"error": {"message": "m", "type": "t", "param": None, "code": 429}}, False),
        ({"error": "plain text"}, False),
        ({"detail": "Not Found"}, False),
        ([{"error": {}}], False),
    ],
)
def test_openai_error_shape(body: object, shaped: bool) -> None:
    assert is_openai_error(orjson.dumps(body)) is shaped


def test_a_non_json_error_body_is_not_openai_shaped() -> None:
    assert is_openai_error(b"<html>502 Bad Gateway</html>") is False
    assert is_openai_error(b"") is False


def test_set_headers_replaces_every_earlier_value_and_keeps_the_rest():
    raw = [(b"content-type", b"application/json"), (b"x-vm-faults", b"9"),
           (b"x-request-id", b"req_1"), (b"x-vm-faults", b"8")]
    same = raw
    set_headers(raw, {"X-VM-Faults": "0", "x-vm-session": "c1"})
    assert same is raw  # in place
    assert raw == [
        (b"content-type", b"application/json"), (b"x-request-id", b"req_1"),
        (b"x-vm-faults", b"0"), (b"x-vm-session", b"c1"),
    ]


def test_set_headers_gives_what_starlette_header_assignment_gives():
    from starlette.responses import Response

    response = Response(b"{}", headers={"X-Request-Id": "r", "x-vm-mode": "strict"})
    expected = Response(b"{}", headers={"X-Request-Id": "r", "x-vm-mode": "strict"})
    headers = {"x-vm-mode": "off", "x-vm-prompt-tokens": "12"}
    for name, value in headers.items():
        expected.headers[name] = value
    seen = response.headers  # a view made before: it sees the change
    set_headers(response.raw_headers, headers)
    assert sorted(response.raw_headers) == sorted(expected.raw_headers)
    assert seen["x-vm-mode"] == "off" and seen["x-vm-prompt-tokens"] == "12"
