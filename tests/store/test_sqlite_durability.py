"""SQLite specifics: files and directories made on first run, reopening, kill -9."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path as FsPath

import pytest

from proxy.store import open_store
from proxy.store.base import Conversation
from proxy.store.sqlite import parse_sqlite_url

from .conftest import make_page

REPO = FsPath(__file__).resolve().parents[2]

# Appends one page per request to conversation "c" of the file in argv[1], forever, and
# prints each page id once `append` has returned: the acknowledgement the loop relies on.
WRITER = """
import asyncio, sys
from proxy.store import open_store
from proxy.store.base import Conversation
from tests.store.conftest import make_page

async def main() -> None:
    store = await open_store("sqlite:///" + sys.argv[1])
    await store.create_conversation("t", "c")
    while True:
        async with store.lock("t", "c"):
            conv = await store.get_conversation("t", "c")
            n = conv.length
            page = make_page(n, f"page {n} " + "lorem ipsum " * (n % 50))
            await store.append("t", "c", [page], expected_version=conv.version,
                               new_length=n + 1, state={"last": n})
        print(page.page_id, flush=True)

asyncio.run(main())
"""


def test_url_forms(tmp_path: FsPath) -> None:
    assert parse_sqlite_url("sqlite:///./data/vm.db") == (FsPath("data/vm.db"), {})
    assert parse_sqlite_url("sqlite:///rel/vm.db?synchronous=full") == (
        FsPath("rel/vm.db"), {"synchronous": "full"},
    )
    assert parse_sqlite_url("sqlite:////abs/vm.db")[0] == FsPath("/abs/vm.db")
    with pytest.raises(ValueError):
        parse_sqlite_url("sqlite:///:memory:")


async def test_file_and_directory_created_then_reopened(tmp_path: FsPath) -> None:
    db = tmp_path / "deep" / "er" / "vm.db"
    store = await open_store(f"sqlite:///{db}?synchronous=full")
    await store.create_conversation("t", "c")
    await store.append("t", "c", [make_page(0, "kept across restarts")], expected_version=0,
                       new_length=1, state={"k": 1})
    await store.close()
    assert db.exists()
    again = await open_store(f"sqlite:///{db}")
    conv = await again.get_conversation("t", "c")
    assert conv is not None and (conv.version, conv.length, conv.state) == (1, 1, {"k": 1})
    hits = await again.search(await again.path("t", "c"), "restarts")
    assert [h.page.page_id for h in hits] == ["msg_0"]
    await again.close()


async def test_relative_url_is_relative_to_the_working_directory(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///./data/vm-proxy.db")
    await store.close()
    assert (tmp_path / "data" / "vm-proxy.db").exists()


def _run_writer_until_killed(db: FsPath, acks_before_kill: int) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    acked: list[str] = []
    try:
        for line in child.stdout:
            acked.append(line.strip())
            if len(acked) >= acks_before_kill:
                break
        # Land the kill at an arbitrary point of a later append, not between two.
        time.sleep(random.uniform(0, 0.02))
        child.send_signal(signal.SIGKILL)
        # The rest through the same file object: lines the loop above read ahead into its
        # buffer are there, not in the pipe (communicate() reads the pipe, and would miss
        # them: a gap in `acked` whenever the writer got ahead of this process).
        rest = child.stdout.read()
        assert child.stderr is not None
        errors = child.stderr.read()
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
    acked.extend(line.strip() for line in rest.splitlines() if line.strip())
    assert child.returncode == -signal.SIGKILL, errors
    return acked


async def test_every_acknowledged_page_survives_kill_9(tmp_path: FsPath) -> None:
    db = tmp_path / "crash.db"
    acknowledged: list[str] = []
    for round_ in range(3):
        acknowledged += _run_writer_until_killed(db, random.randint(5, 40))
        store = await open_store(f"sqlite:///{db}")
        conv = await store.get_conversation("t", "c")
        assert conv is not None
        path = await store.path("t", "c")
        stored = [p.page_id for p in await store.pages_in_range(path, 0, 10**6)]
        # Every acknowledged page is there; at most the one in flight is extra.
        assert stored[: len(acknowledged)] == acknowledged, f"round {round_}"
        assert len(stored) - len(acknowledged) in (0, 1)
        # And the conversation row agrees with its pages: the append was atomic.
        assert conv.length == len(stored) == conv.version
        assert conv.state == {"last": len(stored) - 1}
        acknowledged = stored
        await store.close()


async def test_two_stores_on_one_file_never_both_win_a_version(tmp_path: FsPath) -> None:
    # Two proxy processes on one file: no shared lock, the version check inside
    # BEGIN IMMEDIATE decides.
    url = f"sqlite:///{tmp_path}/shared.db"
    one, two = await open_store(url), await open_store(url)
    try:
        await one.create_conversation("t", "c")
        results = await asyncio.gather(
            one.append("t", "c", [make_page(0, "from one")], expected_version=0, new_length=1),
            two.append("t", "c", [make_page(0, "from two")], expected_version=0, new_length=1),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["Conversation", "VersionConflict"]
        winner = "from one" if isinstance(results[0], Conversation) else "from two"
        pages = await two.get_pages(await two.path("t", "c"), ["msg_0"])
        assert pages["msg_0"].text == winner
        assert (await one.get_conversation("t", "c")) == (await two.get_conversation("t", "c"))
    finally:
        await one.close()
        await two.close()
