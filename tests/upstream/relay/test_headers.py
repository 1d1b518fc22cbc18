"""Which headers cross the proxy: credentials, hop-by-hop, the proxy's own X-VM-*, and the
upstream's ids, timings and rate limits on the way back."""

from __future__ import annotations

import httpx
import pytest

from tests.upstream.relay.conftest import (
    API_KEY,
    UPSTREAM,
    chunk,
    completion,
    make_settings,
    serve,
    sse_bytes,
    sse_response,
    user_chat,
)

CLIENT_HEADERS = {
    "authorization": f"Bearer {API_KEY}",
    "openai-organization": "org-client",
    "x-custom-trace": "trace-1",
    # Hop-by-hop (RFC 9110 §7.6.1), including one named by Connection.
    "connection": "keep-alive, x-hop-named",
    "x-hop-named": "must-not-pass",
    "keep-alive": "timeout=5",
    "te": "trailers",
    "proxy-authorization": "Basic c2VjcmV0",
    "upgrade": "h2c",
    # The proxy's own controls.
    "x-vm-mode": "off",
    "x-vm-session": "s-1",
}
DROPPED = ["connection", "x-hop-named", "keep-alive", "te", "proxy-authorization", "upgrade"]

ROUTES = [
    pytest.param("POST", "/v1/chat/completions", "/chat/completions", id="chat"),
    pytest.param("GET", "/v1/models", "/models", id="models"),
    pytest.param("POST", "/v1/embeddings", "/embeddings", id="embeddings"),
]


def _body(path: str) -> dict[str, object] | None:
    if path.endswith("chat/completions"):
        return user_chat()
    if path.endswith("embeddings"):
        return {"model": "text-embedding-3-small", "input": "hello"}
    return None


@pytest.mark.parametrize(("method", "path", "upstream_path"), ROUTES)
@pytest.mark.parametrize("api_key", ["", "sk-upstream"], ids=["forwarded", "replaced"])
async def test_request_headers_forwarded(
    method: str, path: str, upstream_path: str, api_key: str
) -> None:
    settings = make_settings(upstream={"api_key": api_key})
    async with serve(settings) as proxy:
        route = proxy.router.route(method=method, url=f"{UPSTREAM}{upstream_path}")
        route.mock(return_value=httpx.Response(200, json=completion()))
        response = await proxy.http.request(method, path, json=_body(path), headers=CLIENT_HEADERS)
        assert response.status_code == 200
        (sent,) = proxy.upstream_requests()
        expected = f"Bearer {api_key}" if api_key else f"Bearer {API_KEY}"
        assert sent.headers.get_list("authorization") == [expected]
        assert sent.headers["openai-organization"] == "org-client"
        assert sent.headers["x-custom-trace"] == "trace-1"
        for name in DROPPED:
            assert name not in sent.headers, name
        assert not [name for name in sent.headers if name.lower().startswith("x-vm-")]
        # The client's Host names the proxy; the upstream's is the transport's to set.
        assert sent.headers.get("host") != "proxy"


async def test_azure_api_key_header_is_replaced_when_a_key_is_set() -> None:
    async with serve(make_settings(upstream={"api_key": "sk-upstream"})) as proxy:
        proxy.router.get(f"{UPSTREAM}/models").mock(return_value=httpx.Response(200, json={}))
        await proxy.http.get("/v1/models", headers={"api-key": "azure-client-key"})
        (sent,) = proxy.upstream_requests()
        assert "api-key" not in sent.headers
        assert sent.headers["authorization"] == "Bearer sk-upstream"


UPSTREAM_HEADERS = {
    "x-request-id": "req_abc123",
    "openai-processing-ms": "321",
    "openai-organization": "org-up",
    "openai-version": "2020-10-01",
    "x-ratelimit-remaining-tokens": "149999974",
    "x-ratelimit-reset-requests": "2ms",
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_response_headers_relayed(stream: bool, mode_headers: dict[str, str]) -> None:
    async with serve() as proxy:
        if stream:
            wire = sse_bytes([chunk({"content": "hi"}), chunk({}, "stop")])
            reply = lambda request: sse_response(  # noqa: E731
                wire, headers={**UPSTREAM_HEADERS, "keep-alive": "timeout=9"}
            )
        else:
            reply = lambda request: httpx.Response(  # noqa: E731
                200, json=completion(), headers={**UPSTREAM_HEADERS, "keep-alive": "timeout=9"}
            )
        proxy.router.post(f"{UPSTREAM}/chat/completions").mock(side_effect=reply)
        response = await proxy.http.post(
            "/v1/chat/completions", json=user_chat(stream=stream), headers=mode_headers
        )
        assert response.status_code == 200
        for name, value in UPSTREAM_HEADERS.items():
            assert response.headers.get_list(name) == [value], name
        assert "keep-alive" not in response.headers

        raw = await proxy.client.chat.completions.with_raw_response.create(
            **user_chat(stream=stream), extra_headers=mode_headers
        )
        assert raw.headers["x-request-id"] == "req_abc123"
        assert raw.headers["openai-processing-ms"] == "321"
