"""Memory turns of one history sent at once (an evaluation sampling one prompt in parallel,
a double submit): each response names the conversation its own answer is on (the review:
all four were named the first one's, three answers being on forks)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from proxy.store import open_store
from tests.loop.harness import serve, vm_settings
from tests.loop.test_short_chat import reply

LONG = " ".join(f"word{i}" for i in range(400))
HISTORY = [
    {"role": "user", "content": "Remember: " + LONG},
    {"role": "assistant", "content": "Noted."},
    {"role": "user", "content": "What now?"},
]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_each_answer_is_named_where_it_is_stored(backend: str, tmp_path: Any) -> None:
    asked = 0

    async def numbered(request: httpx.Request) -> httpx.Response:
        nonlocal asked
        asked += 1
        number = asked
        await asyncio.sleep(0.02)  # all four are placed before any answer
        body = reply(request).json()
        body["choices"][0]["message"]["content"] = f"Answer number {number}."
        return httpx.Response(200, json=body)

    url = f"sqlite:///{tmp_path}/store.db" if backend == "sqlite" else "memory://"
    async with serve(numbered, vm_settings(activate_above=200), await open_store(url)) as proxy:
        replies = await asyncio.gather(*(
            proxy.raw_chat({"model": "gpt-4o", "messages": HISTORY}) for _ in range(4)
        ))
        named = set()
        for response in replies:
            assert response.status_code == 200
            assert int(response.headers["x-vm-prompt-tokens-full"]) > 200  # memory active
            conv_id = response.headers["x-vm-session"]
            named.add(conv_id)
            conv = await proxy.store.get_conversation(proxy.tenant, conv_id)
            assert conv is not None and conv.length == 4
            path = await proxy.store.path(proxy.tenant, conv_id)
            pages = await proxy.store.pages_in_range(path, 0, 4)
            said = response.json()["choices"][0]["message"]["content"]
            assert [p.message for p in pages if p.is_message] == [
                *HISTORY, {"role": "assistant", "content": said}
            ]
        assert len(named) == 4
