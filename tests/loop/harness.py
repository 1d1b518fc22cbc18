"""The proxy in process, as a user meets it: the real app (lifespan included) behind the real
`openai` SDK, the upstream replaced by a respx router answering with a `ScriptedModel`.

    async with serve(model, vm_settings()) as proxy:
        raw = await proxy.client.chat.completions.with_raw_response.create(...)
        model.requests                    # every upstream body

Every `serve` block runs under a deadline, so a loop that hangs fails the test instead of
the suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
import respx
from starlette.applications import Starlette

from proxy.config import Settings, load_settings
from proxy.http.app import create_app
from proxy.store import open_store
from proxy.store.base import PageStore
from proxy.store.postgres import PostgresStore
from proxy.tokens import counter_for_model
from proxy.vm.identity import tenant_id
from tests.loop.scripted import VM_TOOLS
from tests.support.whole_parses import ReadAsWhole

UPSTREAM = "http://upstream.test/v1"
API_KEY = "sk-test"
MODEL = "gpt-4o-mini"
DEADLINE_S = 30.0

VM_DEFAULTS: dict[str, Any] = {
    "context_budget": 3000,
    "activate_above": 1500,
    "pin_last_turns": 1,
    "max_faults_per_turn": 3,
    # Nothing is recalled ahead of the model's own calls, so the search -> fault -> answer
    # sequence is the model's doing (tests that want recall turn it back on).
    "recall_share": 0.0,
    "keepalive_s": 0.05,
}


def vm_settings(*, responses: str = "native", **vm: Any) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "vm": {**VM_DEFAULTS, **vm},
            "store": {"url": "memory://"},
            "upstream": {"base_url": UPSTREAM, "responses": responses},
        },
    )


@dataclass
class Proxy:
    app: Starlette
    settings: Settings
    store: PageStore
    model: Any  # a ScriptedModel, or a ResponsesModel
    http: httpx.AsyncClient  # raw HTTP to the app, for byte-level checks
    client: openai.AsyncOpenAI

    @property
    def tenant(self) -> str:
        tenant = self.settings.tenant
        return tenant_id(tenant.secret, API_KEY, tenant.default)

    async def raw_chat(
        self, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        return await self.http.post(
            "/v1/chat/completions",
            json=dict(body),
            headers={"authorization": f"Bearer {API_KEY}", **(headers or {})},
        )


@asynccontextmanager
async def serve(
    model: Any,
    settings: Settings | None = None,
    store: PageStore | None = None,
    *,
    path: str = "/chat/completions",
    upstream_routes: Callable[[respx.Router, str], object] | None = None,
) -> AsyncIterator[Proxy]:
    """`store`: the one to use (closed afterwards); a fresh memory store by default.
    `model` answers the upstream's `path` (a ResponsesModel answers "/responses");
    `upstream_routes(router, base_url)` mocks more of the upstream."""
    settings = settings or vm_settings()
    store = store or await open_store("memory://")
    router = respx.Router(assert_all_called=False, assert_all_mocked=True)
    router.post(f"{settings.upstream.base_url}{path}").mock(side_effect=model)
    if upstream_routes is not None:
        upstream_routes(router, settings.upstream.base_url)
    transport = httpx.MockTransport(router.async_handler)
    app = create_app(settings, upstream_transport=transport, store=store)
    # Every request's body, read whole or from the one before, must be what its bytes
    # parse to, once the memory is done with it (proxy.http.resent).
    read = ReadAsWhole()
    read.install()
    try:
        async with asyncio.timeout(DEADLINE_S), app.router.lifespan_context(app):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://proxy"
            ) as http:
                client = openai.AsyncOpenAI(
                    base_url="http://proxy/v1", api_key=API_KEY, http_client=http, max_retries=0
                )
                yield Proxy(app, settings, store, model, http, client)
        read.check()
    finally:
        read.uninstall()
        await store.close()


# --- looking at upstream bodies -------------------------------------------------------


def tool_names(body: Mapping[str, Any]) -> list[str]:
    return [str((t.get("function") or {}).get("name")) for t in body.get("tools") or ()]


def has_vm_tools(body: Mapping[str, Any]) -> bool:
    vm_names = {*VM_TOOLS, *("vm_" + name for name in VM_TOOLS)}
    return any(name in vm_names for name in tool_names(body))


def vm_message(body: Mapping[str, Any]) -> str | None:
    """The developer/system messages carrying the VM blocks (the leading one, and the
    turn's block when it is a message of its own), joined; None when there are none."""
    found = []
    for message in body.get("messages") or ():
        content = message.get("content")
        if message.get("role") in ("developer", "system") and isinstance(content, str):
            if "<VM:MANIFEST_JSON>" in content or "<VM:CONTEXT>" in content:
                found.append(content)
    return "\n\n".join(found) if found else None


def reply_allowance(body: Mapping[str, Any], settings: Settings) -> int:
    """What the request reserves for the reply: its max_tokens, else the configured reserve,
    which config/default.toml documents as capped at a fifth of the budget."""
    for key in ("max_completion_tokens", "max_tokens"):
        if isinstance(body.get(key), int):
            return int(body[key])
    return min(settings.vm.reply_reserve_tokens, settings.vm.context_budget // 5)


def upstream_cost(body: Mapping[str, Any], settings: Settings) -> int:
    """Prompt tokens (messages and tool schemas) plus the reply's allowance."""
    return counter_for_model(str(body.get("model"))).request(body) + reply_allowance(
        body, settings
    )


def sum_usage(usages: list[dict[str, int]]) -> dict[str, int]:
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {k: sum(u[k] for u in usages) for k in keys}


def tool_results(body: Mapping[str, Any]) -> list[Any]:
    """The parsed tool-message contents of a body, in order."""
    out: list[Any] = []
    for message in body.get("messages") or ():
        if message.get("role") == "tool":
            try:
                out.append(json.loads(message.get("content") or ""))
            except ValueError:
                out.append(message.get("content"))
    return out


# --- raw SSE --------------------------------------------------------------------------


@dataclass
class RawEvent:
    data: str | None
    comment: str | None = None
    event: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.data or "null")


def parse_sse(text: str) -> list[RawEvent]:
    events: list[RawEvent] = []
    data: list[str] = []
    name: str | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if line == "":
            if data:
                events.append(RawEvent("\n".join(data), event=name))
            data, name = [], None
        elif line.startswith(":"):
            events.append(RawEvent(None, comment=line[1:].strip()))
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
    if data:
        events.append(RawEvent("\n".join(data), event=name))
    return events


def store_url(backend: str, tmp_path: Any) -> str:
    """A fresh store's URL: `memory`, a SQLite file in `tmp_path`, or a PostgreSQL schema of
    its own (the test drops it; skipped without VM_TEST_POSTGRES_URL)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    if backend == "postgres":
        url = os.environ.get("VM_TEST_POSTGRES_URL")
        if not url:
            pytest.skip("VM_TEST_POSTGRES_URL is not set: no PostgreSQL to test against")
        separator = "&" if "?" in url else "?"
        return f"{url}{separator}schema=vmtest_{uuid.uuid4().hex[:12]}"
    return "memory://"


@asynccontextmanager
async def fresh_store(backend: str, tmp_path: Any) -> AsyncIterator[str]:
    """`store_url`'s URL, its PostgreSQL schema dropped afterwards."""
    url = store_url(backend, tmp_path)
    try:
        yield url
    finally:
        if backend == "postgres":
            store = await open_store(url)
            assert isinstance(store, PostgresStore)
            await store.drop_schema()
            await store.close()
