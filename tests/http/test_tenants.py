"""Every credential form derives its own tenant (issue 13, DESIGN.md section 4): two users
with different Basic credentials, x-api-keys or api-keys never read each other's sessions.
"""

from __future__ import annotations

import json

import httpx
import pytest

from proxy.loop.policy import credential
from tests.http.conftest import completion, edge, settings_with

MEMORY = settings_with(vm={"mode": "strict"})


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=completion("Noted."))


def said(request: httpx.Request) -> str:
    return json.dumps(json.loads(request.content)["messages"])


@pytest.mark.parametrize(
    ("alice", "bob"),
    [
        ({"authorization": "Basic YWxpY2U6cHc="}, {"authorization": "Basic Ym9iOnB3"}),
        ({"x-api-key": "key-alice"}, {"x-api-key": "key-bob"}),
        ({"api-key": "key-alice"}, {"api-key": "key-bob"}),
        ({"authorization": "Token alice"}, {"authorization": "Token bob"}),
        # The same bearer key, told apart by another credential.
        ({"authorization": "Bearer shared", "x-api-key": "alice"},
         {"authorization": "Bearer shared", "x-api-key": "bob"}),
    ],
    ids=["basic", "x-api-key", "api-key", "other-scheme", "bearer-plus-key"],
)
async def test_different_credentials_never_share_a_session(
    alice: dict[str, str], bob: dict[str, str]
) -> None:
    async with edge(answer, MEMORY) as proxy:
        first = {"model": "gpt-4o-mini",
                 "messages": [{"role": "user", "content": "My locker code is 4711."}]}
        response = await proxy.http.post(
            "/v1/chat/completions", json=first, headers={**alice, "x-vm-session": "notes"}
        )
        assert response.status_code == 200
        second = {"model": "gpt-4o-mini",
                  "messages": [{"role": "user", "content": "What is my locker code?"}]}
        response = await proxy.http.post(
            "/v1/chat/completions", json=second, headers={**bob, "x-vm-session": "notes"}
        )
        assert response.status_code == 200
        assert "4711" not in said(proxy.seen[-1])
        # Alice herself continues her session.
        response = await proxy.http.post(
            "/v1/chat/completions", json=second, headers={**alice, "x-vm-session": "notes"}
        )
        assert "4711" in said(proxy.seen[-1])


def test_one_key_is_one_credential_whichever_header_carries_it() -> None:
    bearer = credential({"authorization": "Bearer sk-1"})
    assert bearer == "sk-1"  # the tenant a bearer key always had
    assert credential({"api-key": "sk-1"}) == bearer
    assert credential({"x-api-key": "sk-1", "authorization": "Bearer sk-1"}) == bearer
    assert credential({"authorization": "Basic sk-1"}) != credential({"x-api-key": "sk-1"})
    assert credential({}) is None
    assert credential({"authorization": "Bearer "}) is None


async def test_a_request_without_credentials_may_be_refused() -> None:
    settings = settings_with(vm={"mode": "strict"}, tenant={"require_credential": True})
    async with edge(answer, settings) as proxy:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi."}]}
        response = await proxy.http.post("/v1/chat/completions", json=body)
        assert response.status_code == 401
        assert response.json() == {"error": {
            "message": "This proxy requires a credential (Authorization, api-key or x-api-key)"
                       " (tenant.require_credential).",
            "type": "authentication_error", "param": None, "code": "missing_credential"}}
        assert proxy.seen == []
        response = await proxy.http.post(
            "/v1/chat/completions", json=body, headers={"x-api-key": "k"}
        )
        assert response.status_code == 200
