"""Vectors outlive the process: `vm-proxy serve` (SQLite, `embeddings.provider = upstream`
against a loopback fake `/v1/embeddings`) is killed with SIGKILL once its worker has
embedded a conversation; the vectors are in the file, and the restarted proxy finds a page
by meaning that shares no word with the question."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.store import open_store
from proxy.store.vectors import open_vectors
from tests.support.fake_embeddings import embeddings_reply
from tests.support.fake_upstream import FakeUpstream, RecordedRequest, Reply, completion
from tests.support.proxy_process import run_proxy

pytestmark = pytest.mark.e2e

ENV = {
    "VM_PROXY_EMBEDDINGS__PROVIDER": "upstream",
    "VM_PROXY_VM__CONTEXT_BUDGET": "2500",
    "VM_PROXY_VM__ACTIVATE_ABOVE": "1200",
    "VM_PROXY_VM__PIN_LAST_TURNS": "1",
}
FACT = "By the way, my puppy is named Biscuit and he loves the beach."
TOPICS = ["gardening tomatoes", "chess openings", "sourdough baking", "tax forms"]


def handler(request: RecordedRequest) -> Reply:
    if request.path == "/v1/embeddings":
        return Reply.json(embeddings_reply(request.json()))
    return Reply.json(completion("ok"))


def history() -> list[dict[str, str]]:
    messages = [{"role": "user", "content": FACT}, {"role": "assistant", "content": "Noted!"}]
    for n in range(40):
        topic = TOPICS[n % len(TOPICS)]
        messages.append({"role": "user", "content": f"Tell me about {topic}, part {n}."})
        messages.append({"role": "assistant", "content": f"Part {n} on {topic}: "
                         + " ".join(f"{topic} fact {n}-{k}." for k in range(8))})  # fmt: skip
    return messages


def ask(base_url: str, question: str) -> None:
    with openai.OpenAI(base_url=base_url, api_key="sk-e2e", max_retries=0, timeout=20) as client:
        messages: Any = [*history(), {"role": "user", "content": question}]
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert reply.choices[0].message.content == "ok"


def embedded_pages(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5, trust_env=False).text
    for line in text.splitlines():
        if line.startswith("vm_embedded_pages_total"):
            return float(line.split()[-1])
    return 0.0


async def stored_vectors(store_url: str) -> dict[str, int]:
    store = await open_store(store_url)
    try:
        index = await open_vectors(store)
        rows = await store._read(  # type: ignore[attr-defined]
            lambda conn: conn.execute(
                "SELECT space, count(*) FROM page_vectors GROUP BY space"
            ).fetchall()
        )
        return dict(rows) | {"pending": len(await index.pending("upstream:text-embedding-3-small"))}
    finally:
        await store.close()


def test_vectors_survive_sigkill_and_serve_the_restarted_proxy(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'vm.db'}"
    with FakeUpstream(handler) as upstream:
        with run_proxy(upstream=upstream.url, store=store, env=ENV) as proxy:
            ask(proxy.base_url, "Which topic came first?")
            deadline = time.monotonic() + 15
            while embedded_pages(proxy.url) < len(history()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert embedded_pages(proxy.url) >= len(history())
            proxy.process.kill()
            proxy.process.wait()
        found = asyncio.run(stored_vectors(store))
        assert found["upstream:text-embedding-3-small"] >= len(history())
        with run_proxy(upstream=upstream.url, store=store, env=ENV) as proxy:
            ask(proxy.base_url, "What is the name of my canine?")
        last = upstream.requests[-1]
        assert last.path == "/v1/chat/completions"
        assert "Biscuit" in last.body.decode()
