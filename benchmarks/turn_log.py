"""What the mutation log stores per memory turn: the turn record (issue 17) against the
event per page shown that it replaced, measured in the same run.

The app runs in-process on SQLite with an upstream that answers at once. A conversation of
`--history` turns is stored, then `--turns` memory turns follow (one new question each,
under X-VM-Session, as a chat app sends them). For those turns the log's bytes are read
back as SQLite keeps them (the JSON of each turn's events); the baseline is the events the
packer logged before turn records, rebuilt from each record: `pin` for each window message,
`map` (`compress` when a page went down a level since the previous turn) for each page of
the block, `evict` for each page the previous turn showed and this one does not. `create`
events are the same in both and left out. With `--postgres URL` both are also inserted in
PostgreSQL tables shaped like the store's `mutations` (a row per event), whose sizes are
read back.

    python benchmarks/turn_log.py [--history 1000] [--turns 100] [--budgets 4000,8000]
                                  [--postgres postgresql://...] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

# This checkout's code, not the installed one: run from another worktree, the script
# measures that worktree.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.vm_turn import conversation, upstream  # noqa: E402
from proxy import create_app  # noqa: E402
from proxy.config import load_settings  # noqa: E402
from proxy.store import open_store  # noqa: E402
from proxy.vm.turn_record import TurnRecord  # noqa: E402

SESSION = "turn-log-bench"


def legacy_events(record: TurnRecord, previous: dict[str, int], at: float) -> list[list[Any]]:
    """The per-page events the packer logged for this prompt before turn records."""
    events: list[list[Any]] = [["pin", s.page_id, 0, "", at] for s in record.window]
    now = {line.page_id: line.level for line in record.lines}
    for page_id, level in sorted(now.items()):
        was = previous.get(page_id)
        events.append(["compress" if was is not None and level > was else "map", page_id,
                       level, "", at])  # fmt: skip
    pinned = {s.page_id for s in record.window}
    events += [["evict", page_id, None, "", at] for page_id in sorted(previous)
               if page_id not in now and page_id not in pinned]  # fmt: skip
    return events


async def run(history: int, turns: int, budget: int, postgres: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        settings = load_settings(environ={}, overrides={
            "vm": {"context_budget": budget, "activate_above": budget // 2},
            "store": {"url": url}, "upstream": {"base_url": "http://upstream.bench/v1"}})
        store = await open_store(url, cache_pages=settings.store.cache_pages)
        app = create_app(settings, upstream_transport=httpx.MockTransport(upstream), store=store)
        messages = conversation(history + turns)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy"
        ) as http:
            headers = {"authorization": "Bearer sk-bench", "x-vm-session": SESSION}
            first = messages[: 1 + 2 * history] + [messages[1 + 2 * history]]
            reply = await http.post("/v1/chat/completions", headers=headers,
                                    json={"model": "gpt-4o", "messages": first})
            reply.raise_for_status()
            for turn in range(1, turns):
                question = messages[1 + 2 * (history + turn)]
                reply = await http.post("/v1/chat/completions", headers=headers,
                                        json={"model": "gpt-4o", "messages": [question]})
                reply.raise_for_status()
        await store.close()
        result, old_rows, new_rows = measure(Path(folder) / "bench.db", history)
    if postgres:
        sizes = await _postgres_sizes(postgres, old_rows, new_rows)
        count = max(result["memory_turns"], 1)
        result["postgres_bytes_per_turn"] = {k: v / count for k, v in sizes.items()}
        result["postgres_ratio"] = sizes["after"] / max(sizes["before"], 1)
    return result


def measure(db: Path, history: int) -> tuple[dict[str, Any], list[list[Any]], list[list[Any]]]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT turn, events FROM mutation_log ORDER BY seq").fetchall()
    conn.close()
    new_bytes = legacy_bytes = new_events = legacy_count = memory_turns = 0
    previous: dict[str, int] = {}
    new_rows: list[list[Any]] = []
    old_rows: list[list[Any]] = []
    for turn, raw in rows:
        kept = [e for e in orjson.loads(raw) if e[0] != "create"]
        if turn <= history or not kept:
            continue
        records = [e for e in kept if e[0] == "turn"]
        if not records:
            continue
        memory_turns += 1
        record = TurnRecord.from_detail(turn, records[0][3])
        old = legacy_events(record, previous, records[0][4])
        old += [e for e in kept if e[0] not in ("turn", "static")]  # faults, searches, cites
        previous = {line.page_id: line.level for line in record.lines}
        new_bytes += len(orjson.dumps(kept))
        legacy_bytes += len(orjson.dumps(old))
        new_events += len(kept)
        legacy_count += len(old)
        new_rows += [[turn, *e] for e in kept]
        old_rows += [[turn, *e] for e in old]
    result: dict[str, Any] = {
        "memory_turns": memory_turns,
        "sqlite_bytes_per_turn": {"before": legacy_bytes / max(memory_turns, 1),
                                  "after": new_bytes / max(memory_turns, 1)},
        "events_per_turn": {"before": legacy_count / max(memory_turns, 1),
                            "after": new_events / max(memory_turns, 1)},
    }
    result["sqlite_ratio"] = new_bytes / max(legacy_bytes, 1)
    return result, old_rows, new_rows


async def _postgres_sizes(url: str, before: list[list[Any]], after: list[list[Any]]
                          ) -> dict[str, int]:
    import asyncpg  # type: ignore[import-untyped]  # the store's own driver

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(url)
    sizes: dict[str, int] = {}
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        for name, rows in (("before", before), ("after", after)):
            table = f"{schema}.log_{name}"
            # The store's `mutations` table and index (proxy/store/postgres_schema.py).
            await conn.execute(
                f"CREATE TABLE {table} (seq bigserial PRIMARY KEY, tenant text NOT NULL,"
                " conv_id text NOT NULL, turn integer NOT NULL, event text NOT NULL,"
                " page_id text NOT NULL, level integer, detail text NOT NULL,"
                " at double precision NOT NULL)")
            await conn.execute(f"CREATE INDEX ON {table} (tenant, conv_id, turn)")
            await conn.copy_records_to_table(
                f"log_{name}", schema_name=schema,
                columns=["tenant", "conv_id", "turn", "event", "page_id", "level", "detail", "at"],
                records=[("t_0123456789abcdef0123456789abcdef", "c0123456789abcdef01234567",
                          turn, event, page_id, level, detail, at)
                         for turn, event, page_id, level, detail, at in rows])
            await conn.execute(f"VACUUM ANALYZE {table}")
            sizes[name] = int(await conn.fetchval(f"SELECT pg_total_relation_size('{table}')"))
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--budgets", default="4000,8000")
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = []
    for budget in (int(b) for b in args.budgets.split(",")):
        result = asyncio.run(run(args.history, args.turns, budget, args.postgres))
        result.update(budget=budget, history=args.history)
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "command": "python -m benchmarks.turn_log " + " ".join(argv or sys.argv[1:]),
            "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
