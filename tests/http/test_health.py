"""/healthz reports a store that cannot write (issue 13, item 9): a disk that is full, or a
write that failed, is a 503 however well the store still reads."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from proxy.store import open_store
from proxy.store import sqlite as sqlite_store
from tests.http.conftest import completion, edge, settings_with

SETTINGS = settings_with(vm={"mode": "strict"})


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=completion("Noted."))


def chat(text: str) -> dict[str, object]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


async def test_a_full_disk_is_reported_until_a_write_succeeds(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'vm.db'}", cache_pages=0)
    inner = store
    assert isinstance(inner, sqlite_store.SQLiteStore)
    async with edge(answer, SETTINGS, store=store) as proxy:
        assert (await proxy.http.get("/healthz")).status_code == 200
        # SQLite's own "database or disk is full": no page may be added past this count.
        pages = await inner._write(lambda conn: conn.execute("PRAGMA page_count").fetchone())
        await inner._write(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages[0]}"))
        response = await proxy.http.post(
            "/v1/chat/completions", json=chat("A long note. " * 5000),
            headers={"authorization": "Bearer k"})
        assert response.status_code == 200  # answered without memory (vm.fail_open)
        health = await proxy.http.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "unavailable", "store": "StoreError"}
        await inner._write(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
        await proxy.http.post("/v1/chat/completions", json=chat("Short."),
                              headers={"authorization": "Bearer k"})
        assert (await proxy.http.get("/healthz")).status_code == 200
    await store.close()


async def test_a_disk_nearly_full_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'vm.db'}")
    async with edge(answer, SETTINGS, store=store) as proxy:
        assert (await proxy.http.get("/healthz")).status_code == 200
        monkeypatch.setattr(sqlite_store, "free_bytes", lambda file: 4096)
        assert (await proxy.http.get("/healthz")).status_code == 503
    await store.close()


async def test_a_damaged_database_file_is_reported(tmp_path: Path) -> None:
    """The file overwritten under a running proxy (the review's check): its connections'
    caches still answer `SELECT 1`, but the file is no database; /healthz says so."""
    file = tmp_path / "vm.db"
    store = await open_store(f"sqlite:///{file}")
    async with edge(answer, SETTINGS, store=store) as proxy:
        await proxy.http.post("/v1/chat/completions", json=chat("Before."),
                              headers={"authorization": "Bearer k"})
        assert (await proxy.http.get("/healthz")).status_code == 200
        with file.open("r+b") as opened:
            opened.write(b"\x8f" * 4096)
        health = await proxy.http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["store"] == "StoreError"
    await store.close()


async def test_damage_a_request_finds_is_reported_from_then_on(tmp_path: Path) -> None:
    import sqlite3

    store = await open_store(f"sqlite:///{tmp_path / 'vm.db'}")
    inner = store
    assert isinstance(inner, sqlite_store.SQLiteStore)
    async with edge(answer, SETTINGS, store=store) as proxy:
        assert (await proxy.http.get("/healthz")).status_code == 200

        def damaged(conn: object) -> None:
            error = sqlite3.DatabaseError("database disk image is malformed")
            error.sqlite_errorcode = sqlite3.SQLITE_CORRUPT  # type: ignore[attr-defined]
            raise error

        with pytest.raises(Exception, match="malformed"):
            await inner._read(damaged)
        assert (await proxy.http.get("/healthz")).status_code == 503
    await store.close()
