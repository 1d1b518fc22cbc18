"""SQLite schema upgrades: a database written by an older proxy opens with its data."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path as FsPath

import pytest

from proxy.store import open_store
from proxy.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from proxy.vm.mutations import Mutation

from .conftest import make_page

# Times with every digit a float has, which a JSON writer of 15 digits would round.
AT = [1_700_000_000.1234567, 1_700_000_001.0, 1_700_000_002.9876543]


def _version_1_database(db: FsPath) -> None:
    """The schema and rows a version-1 proxy left: its mutations one row each."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    for statement in MIGRATIONS[0]:
        assert isinstance(statement, str)
        conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute(
        "INSERT INTO conversations VALUES ('t', 'c', NULL, 0, 0, 3, ?, 0, 0)", (b"{}",)
    )
    conn.executemany(
        "INSERT INTO mutations (tenant, conv_id, turn, event, page_id, level, detail, at)"
        " VALUES ('t', 'c', ?, ?, ?, ?, ?, ?)",
        [(1, "create", "msg_0", None, "", AT[0]), (1, "map", "msg_0", 2, "why", AT[1]),
         (2, "fault", "msg_0", 0, "", AT[2])],
    )
    conn.close()


async def test_a_version_1_mutation_log_is_kept_record_for_record(tmp_path: FsPath) -> None:
    db = tmp_path / "old.db"
    _version_1_database(db)
    store = await open_store(f"sqlite:///{db}")
    try:
        assert await store.mutations("t", "c") == [
            Mutation(1, "create", "msg_0", None, "", AT[0]),
            Mutation(1, "map", "msg_0", 2, "why", AT[1]),
            Mutation(2, "fault", "msg_0", 0, "", AT[2]),
        ]
        assert [m.event for m in await store.mutations("t", "c", turn=1)] == ["create", "map"]
        await store.append("t", "c", [make_page(0)], expected_version=3, new_length=1,
                           mutations=[Mutation(2, "evict", "msg_0", at=AT[0]),
                                      Mutation(3, "pin", "msg_0", at=AT[1])])
        assert [(m.turn, m.event) for m in await store.mutations("t", "c")][-3:] == [
            (2, "fault"), (2, "evict"), (3, "pin")]
        assert [m.event for m in await store.mutations("t", "c", turn=2)] == [
            "fault", "evict"]
    finally:
        await store.close()
    conn = sqlite3.connect(db)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert "mutations" not in tables and "mutation_log" in tables
    assert version == (str(SCHEMA_VERSION),)


async def test_a_newer_schema_is_refused(tmp_path: FsPath) -> None:
    db = tmp_path / "new.db"
    await (await open_store(f"sqlite:///{db}")).close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                 (str(SCHEMA_VERSION + 1),))
    conn.close()
    before = set(threading.enumerate())
    with pytest.raises(RuntimeError, match="newer"):
        await open_store(f"sqlite:///{db}")
    # The refused store's threads are stopped, not left waiting for work.
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("vm-sqlite")]
