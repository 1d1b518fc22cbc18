"""Memory that outlives the process: `vm-proxy serve` killed with SIGKILL mid-conversation
and restarted on the same SQLite file, and two proxy processes taking turns on one
PostgreSQL conversation. Server-side sessions (`X-VM-Session`, only new messages sent)
make it visible: the upstream can only get the earlier turns from the store."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.store import open_store
from proxy.store.postgres import PostgresStore
from tests.support.fake_upstream import FakeUpstream, RecordedRequest, Reply, completion
from tests.support.proxy_process import run_proxy

pytestmark = pytest.mark.e2e


class CountingModel:
    """Answers "answer N" for the N-th chat request; can hold one request open."""

    def __init__(self) -> None:
        self.count = 0
        self.hold: int | None = None
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self, request: RecordedRequest) -> Reply:
        self.count += 1
        if self.count == self.hold:
            self.held.set()
            self.release.wait(20)
        return Reply.json(completion(f"answer {self.count}"))


def chat(base_url: str, session: str, text: str) -> str:
    with openai.OpenAI(
        base_url=base_url, api_key="sk-durable", max_retries=0, timeout=20
    ) as client:
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": text}],
            extra_headers={"X-VM-Session": session},
        )
    return reply.choices[0].message.content or ""


def history(request: RecordedRequest) -> list[tuple[str, str]]:
    body: dict[str, Any] = request.json()
    return [(m["role"], m["content"]) for m in body["messages"]]


def test_sigkill_mid_conversation_then_continue(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'vm.db'}"
    model = CountingModel()
    with FakeUpstream(model) as upstream:
        with run_proxy(upstream=upstream.url, store=store) as proxy:
            answers = [chat(proxy.base_url, "durable", f"question {i}") for i in range(4)]
            # A fifth turn is in flight (the upstream holds it) when the process dies.
            model.hold = 5
            inflight = threading.Thread(
                target=lambda: pytest.raises(openai.APIError, chat, proxy.base_url, "durable",
                                             "question 4"),
                daemon=True,
            )
            inflight.start()
            assert model.held.wait(10)
            proxy.process.kill()
            proxy.process.wait()
            model.release.set()
            inflight.join(10)
        assert answers == [f"answer {i}" for i in range(1, 5)]
        with run_proxy(upstream=upstream.url, store=store) as proxy:
            # The client retries the question that never got its answer, then goes on.
            assert chat(proxy.base_url, "durable", "question 4") == "answer 6"
            assert chat(proxy.base_url, "durable", "question 5") == "answer 7"
    expected: list[tuple[str, str]] = []
    for i in range(5):
        expected.append(("user", f"question {i}"))
        if i < 4:
            expected.append(("assistant", f"answer {i + 1}"))
    expected += [("assistant", "answer 6"), ("user", "question 5")]
    assert history(upstream.requests[-1]) == expected


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A schema of its own, dropped after the test (every run of the suite left one)."""
    url = os.environ.get("VM_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("VM_TEST_POSTGRES_URL is not set: no PostgreSQL to test against")
    separator = "&" if "?" in url else "?"
    schema_url = f"{url}{separator}schema=e2e_{uuid.uuid4().hex[:12]}"
    yield schema_url
    asyncio.run(_drop_schema(schema_url))


async def _drop_schema(url: str) -> None:
    store = await open_store(url)
    assert isinstance(store, PostgresStore)
    try:
        await store.drop_schema()
    finally:
        await store.close()


def test_two_proxies_share_one_conversation(postgres_url: str) -> None:
    model = CountingModel()
    with FakeUpstream(model) as upstream:
        with (
            run_proxy(upstream=upstream.url, store=postgres_url) as first,
            run_proxy(upstream=upstream.url, store=postgres_url) as second,
        ):
            replicas = [first, second]
            for i in range(6):
                chat(replicas[i % 2].base_url, "shared", f"question {i}")
    expected: list[tuple[str, str]] = []
    for i in range(6):
        expected.append(("user", f"question {i}"))
        if i < 5:
            expected.append(("assistant", f"answer {i + 1}"))
    assert history(upstream.requests[-1]) == expected
    # Each replica served every other turn, each time from what the other had stored.
    assert len(upstream.requests) == 6


def whole_history_chat(base_url: str, messages: list[dict[str, str]]) -> tuple[str, str]:
    """A request resending the whole history (no X-VM-Session): the answer, and the
    conversation the proxy says it is stored on."""
    reply = httpx.post(
        f"{base_url}/chat/completions", json={"model": "gpt-4o-mini", "messages": messages},
        headers={"authorization": "Bearer sk-durable"}, timeout=20, trust_env=False,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"], reply.headers["x-vm-session"]


async def stored_contents(url: str, conv_id: str) -> list[str]:
    store = await open_store(url)
    try:
        (info,) = await store.list_conversations(conv_id=conv_id)
        path = await store.path(info.tenant, conv_id)
        pages = await store.pages_in_range(path, 0, info.length)
        return [str((page.message or {}).get("content")) for page in pages]
    finally:
        await store.close()


def test_sigkill_right_after_a_new_chat_is_answered(tmp_path: Path) -> None:
    """A whole-history request's first turn is answered before its conversation is written
    (created deferred, with the turn): a process killed right then may lose both, and the
    client's next request, resending everything, stores every message."""
    store = f"sqlite:///{tmp_path / 'vm.db'}"
    model = CountingModel()
    messages = [{"role": "user", "content": "question 0"}]
    with FakeUpstream(model) as upstream:
        with run_proxy(upstream=upstream.url, store=store) as proxy:
            answer, _ = whole_history_chat(proxy.base_url, messages)
            proxy.process.kill()
            proxy.process.wait()
        messages += [{"role": "assistant", "content": answer},
                     {"role": "user", "content": "question 1"}]
        with run_proxy(upstream=upstream.url, store=store) as proxy:
            answer, conv_id = whole_history_chat(proxy.base_url, messages)
    assert asyncio.run(stored_contents(store, conv_id)) == [
        "question 0", "answer 1", "question 1", "answer 2"]


def test_many_short_chats_at_once_are_all_stored(tmp_path: Path) -> None:
    """Sixteen clients' whole-history chats at once, through the openai SDK: their new
    conversations and turns reach the SQLite writer together (written together, in runs:
    proxy.store.sqlite_batch), and every message of every chat is stored, in order."""
    store = f"sqlite:///{tmp_path / 'vm.db'}"

    async def one_chat(client: openai.AsyncOpenAI, number: int) -> tuple[str, list[str]]:
        messages: list[Any] = []
        conv_id = ""
        for turn in range(3):
            messages.append({"role": "user", "content": f"chat {number}, question {turn}"})
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=messages)
            conv_id = raw.headers["x-vm-session"]
            answer = raw.parse().choices[0].message.content or ""
            messages.append({"role": "assistant", "content": answer})
        return conv_id, [m["content"] for m in messages]

    async def chats(base_url: str) -> list[tuple[str, list[str]]]:
        async with openai.AsyncOpenAI(
            base_url=base_url, api_key="sk-many", max_retries=0, timeout=20
        ) as client:
            return await asyncio.gather(*(one_chat(client, n) for n in range(16)))

    with FakeUpstream(CountingModel()) as upstream:
        with run_proxy(upstream=upstream.url, store=store) as proxy:
            done = asyncio.run(chats(proxy.base_url))
            proxy.process.terminate()  # a clean stop: what is deferred is written first
            proxy.process.wait(20)
            assert "was lost" not in proxy.logs()
    assert len({conv_id for conv_id, _ in done}) == 16
    for conv_id, sent in done:
        assert asyncio.run(stored_contents(store, conv_id)) == sent
