"""The admin API over HTTP: off unless a key is set, refusing every other key (a tenant's
included), never showing a key, every answer JSON; and what it answers."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.loop.harness import API_KEY, Proxy, serve, vm_settings
from tests.loop.history import FACT_MESSAGE, LOCKER, LOCKER_CODE, QUESTION, SYSTEM
from tests.loop.scripted import ScriptedModel, agent

ADMIN_KEY = "admin-key-0123456789abcdef"
UPSTREAM_KEY = "sk-upstream-secret-value-42"


def settings(**admin: Any) -> Any:
    base = vm_settings(context_budget=2500, activate_above=100, recall_share=1.0)
    return base.model_copy(update={
        "admin": base.admin.model_copy(update=admin),
        "upstream": base.upstream.model_copy(update={"api_key": UPSTREAM_KEY}),
    })


async def _chat(proxy: Proxy, turns: int) -> None:
    for turn in range(turns):
        text = FACT_MESSAGE if turn == 1 else (QUESTION if turn == turns - 1 else
                                               f"Turn {turn}: tell me about kites, please.")
        system = [{"role": "system", "content": SYSTEM}] if turn == 0 else []
        response = await proxy.raw_chat(
            {"model": "gpt-4o-mini", "messages": [*system, {"role": "user", "content": text}]},
            {"x-vm-session": "locker-chat"},
        )
        assert response.status_code == 200, response.text


async def _get(proxy: Proxy, path: str, key: str | None = ADMIN_KEY, **headers: str
               ) -> httpx.Response:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return await proxy.http.get(path, headers=headers)


async def test_off_without_a_key() -> None:
    async with serve(ScriptedModel(agent(LOCKER)), settings()) as proxy:
        for path in ("/admin/", "/admin/api/conversations", "/admin/static/inspector.js"):
            response = await _get(proxy, path)
            assert response.status_code == 404
            assert response.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "no key"),
        ({"authorization": "Bearer wrong-key-0123456789abcdef"}, "a wrong key"),
        ({"authorization": f"Bearer {API_KEY}"}, "a tenant's key"),
        ({"authorization": f"Bearer {UPSTREAM_KEY}"}, "the upstream key"),
        ({"authorization": f"Basic {ADMIN_KEY}"}, "another scheme"),
        ({"x-api-key": ADMIN_KEY}, "another header"),
        ({"authorization": f"Bearer {ADMIN_KEY[:-1]}"}, "a prefix of the key"),
    ],
)
async def test_every_other_key_is_refused(headers: dict[str, str], why: str) -> None:
    async with serve(ScriptedModel(agent(LOCKER)), settings(api_key=ADMIN_KEY)) as proxy:
        await _chat(proxy, 2)
        for path in ("/admin/api/conversations", "/admin/api/tenants",
                     "/admin/api/conversations/x/turns/-1", "/admin/api/nothing"):
            response = await proxy.http.get(path, headers=headers)
            assert response.status_code == 401, why
            assert response.headers["content-type"] == "application/json"
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == "invalid_admin_key"


async def test_the_admin_key_is_no_tenant_key() -> None:
    model = ScriptedModel(agent(LOCKER))
    async with serve(model, settings(api_key=ADMIN_KEY)) as proxy:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        for headers in ({"authorization": f"Bearer {ADMIN_KEY}"}, {"api-key": ADMIN_KEY}):
            response = await proxy.http.post("/v1/chat/completions", json=body, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "admin_key_refused"
        response = await proxy.http.get("/v1/models",
                                        headers={"x-api-key": ADMIN_KEY})
        assert response.status_code == 401
        assert model.requests == []


@pytest.mark.parametrize("headers", [
    [("authorization", "Basic " + base64.b64encode(f"user:{ADMIN_KEY}".encode()).decode())],
    [("authorization", ADMIN_KEY)],
    [("authorization", f"Token {ADMIN_KEY}")],
    [("authorization", f"Bearer\t{ADMIN_KEY}")],
    [("authorization", "Bearer sk-someone-else"), ("authorization", f"Bearer {ADMIN_KEY}")],
    [("x-api-key", "sk-someone-else"), ("x-api-key", ADMIN_KEY)],
], ids=["basic", "no scheme", "token scheme", "tab", "second authorization", "second x-api-key"])
async def test_the_admin_key_is_refused_in_any_form(headers: list[tuple[str, str]]) -> None:
    """Whatever the scheme or header, a `/v1` request carrying the admin key is refused,
    so the key never becomes a tenant's nor reaches the upstream (the review: these five
    forms were relayed with the key)."""
    model = ScriptedModel(agent(LOCKER))
    async with serve(model, settings(api_key=ADMIN_KEY)) as proxy:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        response = await proxy.http.post("/v1/chat/completions", json=body,
                                         headers=httpx.Headers(headers))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "admin_key_refused"
        plain = await proxy.http.post("/v1/chat/completions", json=body, headers={
            "authorization": "Basic " + base64.b64encode(b"user:sk-plain").decode()})
        assert plain.status_code == 200  # a Basic credential of another key passes
    assert len(model.requests) == 1


@pytest.mark.parametrize("key", ["пароль-администратора-1", " admin-key-0123456789ab",
                                 "admin key 0123456789abcdef", " " * 20])
def test_an_admin_key_no_header_can_carry_is_refused_at_start(key: str) -> None:
    with pytest.raises(ValueError, match="ASCII"):
        settings().model_validate({**settings().model_dump(), "admin": {"api_key": key}})


async def test_api_answers_are_neither_cached_nor_sniffed_and_read_ascii_integers() -> None:
    async with serve(ScriptedModel(agent(LOCKER)), settings(api_key=ADMIN_KEY)) as proxy:
        await _chat(proxy, 2)
        listed = await _get(proxy, "/admin/api/conversations")
        conv = listed.json()["data"][0]["id"]
        for path, status in (
            ("/admin/api/conversations", 200),
            (f"/admin/api/conversations/{conv}/turns/1", 200),
            ("/admin/api/conversations/nope", 404),
            (f"/admin/api/conversations/{conv}/turns/%EF%BC%91", 400),  # a full-width 1
            (f"/admin/api/conversations/{conv}/turns/1_0", 400),
            (f"/admin/api/conversations/{conv}/pages?from=-100", 400),
            (f"/admin/api/conversations/{conv}/pages?from=%201", 400),
            (f"/admin/api/conversations/{conv}/search?q=kites&limit=-3", 400),
            (f"/admin/api/conversations/{conv}/search?q=kites&limit=0", 400),
        ):
            response = await _get(proxy, path)
            assert response.status_code == status, (path, response.text)
            assert response.headers["cache-control"] == "no-store", path
            assert response.headers["x-content-type-options"] == "nosniff", path


def test_a_short_admin_key_or_the_upstream_key_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="16"):
        settings(api_key="short").model_validate(settings(api_key="short").model_dump())
    with pytest.raises(ValueError, match="differ"):
        settings().model_validate({**settings().model_dump(), "admin": {
            "api_key": UPSTREAM_KEY}})


async def test_what_the_api_answers_and_that_it_shows_no_key() -> None:
    model = ScriptedModel(agent(LOCKER))
    async with serve(model, settings(api_key=ADMIN_KEY)) as proxy:
        await _chat(proxy, 8)
        bodies: list[str] = []

        async def get(path: str) -> Any:
            response = await _get(proxy, path)
            assert response.status_code == 200, (path, response.text)
            assert response.headers["content-type"] == "application/json"
            assert response.headers["cache-control"] == "no-store"
            bodies.append(response.text)
            return response.json()

        listed = (await get("/admin/api/conversations"))["data"]
        assert [c["session"] for c in listed] == ["locker-chat"]
        conv = listed[0]
        assert set(conv) >= {"id", "session", "tenant", "turns", "pages", "tokens",
                             "last_used"}
        assert conv["tenant"] == proxy.tenant and conv["turns"] == 8
        assert conv["messages"] == 17 and conv["pages"] >= 17 and conv["tokens"] > 0, conv
        assert (await get("/admin/api/conversations?session=nobody"))["data"] == []
        assert (await get("/admin/api/tenants"))["data"][0]["conversations"] == 1
        base = f"/admin/api/conversations/{conv['id']}"
        turn = await get(f"{base}/turns/-1")
        assert set(turn) >= {"turn", "upstream_request", "mapped", "pinned", "faults",
                             "searches", "tokens"}
        assert turn["turn"] == 8 and turn["check"]["same"] is True
        assert turn["upstream_request"] == model.requests[-1] or any(
            turn["upstream_request"] == r for r in model.requests)
        assert {m["level"] for m in turn["mapped"]} <= {0, 1, 2, 3}
        assert turn["tokens"]["prompt"] > 0 and turn["tokens"]["full"] > 0
        timeline = await get(f"{base}/turns")
        assert [e["turn"] for e in timeline["data"]][-1] == 8
        found = await get(f"{base}/search?q=locker+code")
        assert "msg_3" in [r["id"] for r in found["results"]]
        assert all(h["score"] is not None for h in found["hits"])
        page = await get(f"{base}/pages/msg_3")
        assert LOCKER_CODE in page["levels"][0]["text"] and len(page["levels"]) == 4
        listing = await get(f"{base}/pages?from=0&limit=4")
        assert [p["id"] for p in listing["data"]][:2] == ["msg_0", "msg_1"]
        assert listing["next"] == 4 and listing["data"][0]["role"] == "system"
        tree = await get(f"{base}/tree")
        assert tree["data"][0]["id"] == conv["id"] and tree["data"][0]["on_path"]
        assert SYSTEM in (await get(f"{base}/pages/msg_0"))["levels"][0]["text"]
        for text in bodies:
            assert API_KEY not in text and ADMIN_KEY not in text and UPSTREAM_KEY not in text
        for bad, status in ((f"{base}/turns/x", 400), (f"{base}/pages/msg_999", 404),
                            ("/admin/api/conversations/nope", 404),
                            (f"{base}/search?q=", 400), (f"{base}/turns/8?request=5", 404),
                            # Past any store's integers (was a 500; the review).
                            (f"{base}/turns?from={10**20}", 400),
                            (f"{base}/pages?from={10**20}", 400),
                            (f"{base}/turns/{10**23}", 400)):
            response = await _get(proxy, bad)
            assert response.status_code == status, bad
            assert response.json()["error"]["message"]


async def test_the_page_is_served_with_its_files() -> None:
    async with serve(ScriptedModel(agent(LOCKER)), settings(api_key=ADMIN_KEY)) as proxy:
        page = await _get(proxy, "/admin/", key=None)
        assert page.status_code == 200 and "inspector.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        script = await _get(proxy, "/admin/static/inspector.js", key=None)
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await _get(proxy, "/admin/static/../config.py", key=None)).status_code == 404
        assert (await _get(proxy, "/admin", key=None)).status_code == 308
