"""Replay of every recorded upstream exchange in ../shared/recorded through the proxy.

For each interaction the mocked upstream answers with the recorded status, content type,
encoding, request id and body; the recorded request goes through the proxy with
`X-VM-Mode: off` (or to its own `/v1/*` route when it was not a chat completion). The client
must get the same status and the same body bytes; an error body the upstream wrote in
another shape than OpenAI's comes back normalised, keeping what it said.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from proxy.errors import InvalidRequest
from proxy.http.validation import parse_chat_request
from tests.upstream.recordings import RECORDED
from tests.upstream.relay.conftest import UPSTREAM, VM_OFF, Chunks, assert_openai_error, serve

PIECE = 97
RELAYED_HEADERS = ("content-type", "content-encoding", "x-request-id")


@dataclass
class Exchange:
    method: str
    url: str
    request_body: bytes
    status: int
    headers: dict[str, str]  # the ones the mock answers with
    body: bytes  # as on the wire (still compressed when content-encoding says so)

    @property
    def decoded_body(self) -> bytes:
        if self.headers.get("content-encoding") == "gzip":
            return gzip.decompress(self.body)
        return self.body

    @property
    def is_chat(self) -> bool:
        return urlsplit(self.url).path.endswith("/chat/completions")


def _text(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


def _body(recorded: dict[str, Any]) -> bytes:
    """pydantic-ai's `parsed_body` (JSON, re-serialised), vcrpy's `body.string` (verbatim,
    bytes for `!!binary`), or a body stored as a mapping (JSON)."""
    if "parsed_body" in recorded:
        return _text(recorded["parsed_body"])
    body = recorded.get("body")
    if isinstance(body, dict) and set(body) == {"string"}:
        return _text(body["string"])
    return _text(body)


def _exchange(interaction: dict[str, Any]) -> Exchange:
    request, response = interaction["request"], interaction["response"]
    headers: dict[str, str] = {}
    for name, values in (response.get("headers") or {}).items():
        if name.lower() in RELAYED_HEADERS:
            headers[name.lower()] = values[0] if isinstance(values, list) else str(values)
    return Exchange(
        method=request["method"],
        url=request["uri"],
        request_body=_body(request),
        status=int(response["status"]["code"]),
        headers=headers,
        body=_body(response),
    )


def _cases() -> list[Any]:
    if not RECORDED.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no recordings at {RECORDED}"))]
    cases = []
    for path in sorted(RECORDED.glob("*/*.yaml")):
        if path.parent.name == "spec":
            continue
        cassette = yaml.safe_load(path.read_text())
        for index, interaction in enumerate(cassette["interactions"]):
            name = f"{path.parent.name}/{path.stem}#{index}"
            cases.append(pytest.param(interaction, id=name))
    return cases


def _is_openai_shaped(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return (
        isinstance(error, dict)
        and {"message", "type", "param", "code"} <= set(error)
        and isinstance(error["message"], str)
        and isinstance(error["type"], str)
        and (error["code"] is None or isinstance(error["code"], str))
        and (error["param"] is None or isinstance(error["param"], str))
    )


def _chat_body(exchange: Exchange) -> bytes:
    """The recorded request as a client of the proxy sends it. Azure names the model in the
    URL (`/deployments/<name>/`), an OpenAI-compatible client in the body."""
    body = exchange.request_body
    parts = urlsplit(exchange.url).path.split("/")
    if "deployments" in parts:
        parsed = json.loads(body)
        if "model" not in parsed:
            parsed["model"] = parts[parts.index("deployments") + 1]
            body = json.dumps(parsed).encode()
    return body


def _proxy_target(exchange: Exchange) -> tuple[str, str, str]:
    """(method, proxy path with query, the upstream URL it must reach)."""
    parts = urlsplit(exchange.url)
    if exchange.is_chat:
        return "POST", "/v1/chat/completions", f"{UPSTREAM}/chat/completions"
    suffix = parts.path + (f"?{parts.query}" if parts.query else "")
    return exchange.method, "/v1" + suffix, UPSTREAM + suffix


def _assert_error_survives(recorded: bytes, received: dict[str, Any]) -> None:
    """A normalised error keeps the upstream's message and code."""
    error = assert_openai_error(received)
    try:
        original = json.loads(recorded)
    except ValueError:
        assert recorded.decode().strip()[:200] in error["message"]
        return
    inner = original.get("error") if isinstance(original, dict) else None
    if isinstance(inner, dict):
        if inner.get("message"):
            assert error["message"] == inner["message"]
        if inner.get("code") is not None:
            assert error["code"] == str(inner["code"])
        if isinstance(inner.get("type"), str):
            assert error["type"] == inner["type"]
        return
    # Any other shape, e.g. {"error": "bad_credentials", "message": "Bad credentials"}:
    # every string the upstream gave must still be there for the client to read.
    told = (
        [v for v in original.values() if isinstance(v, str)] if isinstance(original, dict) else []
    )
    shown = json.dumps(error)
    for text in told:
        assert text in shown, (text, error)


def _upstream_reply(exchange: Exchange) -> httpx.Response:
    """The recorded answer, its body arriving in odd-sized pieces like a network's."""
    body = exchange.body
    pieces = [body[i : i + PIECE] for i in range(0, len(body), PIECE)]
    headers = dict(exchange.headers)
    if "text/event-stream" not in headers.get("content-type", ""):
        headers["content-length"] = str(len(body))
    return httpx.Response(exchange.status, headers=headers, stream=Chunks(pieces))


@pytest.mark.parametrize("interaction", _cases())
async def test_replay(interaction: dict[str, Any]) -> None:
    exchange = _exchange(interaction)
    method, path, upstream_url = _proxy_target(exchange)
    content = _chat_body(exchange) if exchange.is_chat else exchange.request_body

    async with serve() as proxy:
        proxy.router.route(method=method, url=upstream_url).mock(
            side_effect=lambda request: _upstream_reply(exchange)
        )
        headers = {"authorization": "Bearer sk-replay", **VM_OFF}
        if content:
            headers["content-type"] = "application/json"
        response = await proxy.http.request(method, path, content=content or None, headers=headers)
        upstream_calls = proxy.upstream_requests()

    if exchange.is_chat:
        try:
            parse_chat_request(content)
        except InvalidRequest as refused:
            # The proxy refuses it itself; the upstream refused it too, with the same status
            # and naming the same field.
            assert exchange.status == response.status_code == 400
            assert upstream_calls == []
            recorded = json.loads(exchange.decoded_body)["error"]
            assert assert_openai_error(response.json())["param"] == recorded["param"], refused
            return

    assert len(upstream_calls) == 1
    (sent,) = upstream_calls
    assert sent.method == method
    assert json.loads(sent.content or b"null") == json.loads(content or b"null")
    assert response.status_code == exchange.status
    if "x-request-id" in exchange.headers:
        assert response.headers["x-request-id"] == exchange.headers["x-request-id"]

    if exchange.status < 400 or _is_openai_shaped(exchange.decoded_body):
        # httpx undoes a relayed Content-Encoding; the decoded bytes are the upstream's.
        assert response.content == exchange.decoded_body
        if "content-type" in exchange.headers:
            assert response.headers["content-type"] == exchange.headers["content-type"]
    else:
        _assert_error_survives(exchange.decoded_body, response.json())
