"""Bytes on disk per stored message of the SQLite store, by what they hold (issue 15).

    python benchmarks/storage.py [--chats 500] [--turns 4] [--json out.json]
    python benchmarks/storage.py --file data/vm-proxy.db     # an existing database

Drives the app in-process (ASGI, an upstream answering at once) with short chats as a chat
app sends them (each request resends the chat's history and adds one user message; below
`vm.activate_above`, so forwarded unchanged and stored with its answer), on a fresh SQLite
file with the default settings; then closes the store (its deferred writes done, the WAL
checkpointed) and reads the file with SQLite's dbstat table: the bytes of each table and
index, grouped as
    pages          the page rows (bodies) and their indexes
    search index   the FTS5 index of the pages' terms
    hashes         the chain-hash index (how a resent history is found)
    log            the mutation log
    conversations  conversation rows (their state) and sessions, responses
and divided by the messages stored (message pages).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

GROUPS = {
    "pages": ("pages", "sqlite_autoindex_pages_1", "pages_anchor", "pages_conv"),
    "search index": ("page_fts",),
    "hashes": ("hashes", "hashes_conv"),
    "log": ("mutation_log", "mutation_log_turn"),
    "conversations": ("conversations", "conversations_parent", "conversations_updated",
                      "sessions", "sessions_conv", "responses", "responses_conv"),
}


def _group(name: str) -> str:
    for group, names in GROUPS.items():
        if name in names or any(name.startswith(n + "_") for n in names if n == "page_fts"):
            return group
    return "other"


def breakdown(file: Path) -> dict[str, Any]:
    """Bytes of `file` by group (dbstat's pgsize: whole pages, free space in them included),
    the messages and pages stored, and bytes per message."""
    conn = sqlite3.connect(file)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sizes: dict[str, int] = {}
        payload: dict[str, int] = {}
        for name, pgsize, used in conn.execute(
            "SELECT name, sum(pgsize), sum(payload) FROM dbstat GROUP BY name"
        ):
            group = _group(name)
            sizes[group] = sizes.get(group, 0) + int(pgsize)
            payload[group] = payload.get(group, 0) + int(used)
        ((messages,),) = conn.execute("SELECT count(*) FROM pages WHERE is_message = 1")
        ((pages,),) = conn.execute("SELECT count(*) FROM pages")
        ((conversations,),) = conn.execute("SELECT count(*) FROM conversations")
        ((body,),) = conn.execute("SELECT coalesce(sum(length(body)), 0) FROM pages")
        ((text,),) = conn.execute(
            "SELECT coalesce(sum(length(json_extract(body, '$.message.content'))), 0)"
            " FROM pages WHERE is_message = 1"
        )
    finally:
        conn.close()
    file_bytes = file.stat().st_size
    per = max(messages, 1)
    return {
        "file_bytes": file_bytes,
        "messages": messages,
        "pages": pages,
        "conversations": conversations,
        "bytes_per_message": round(file_bytes / per),
        "by_group_per_message": {g: round(b / per) for g, b in sorted(sizes.items())},
        "payload_per_message": {g: round(b / per) for g, b in sorted(payload.items())},
        "page_body_per_message": round(body / per),
        "message_text_per_message": round(text / per),
    }


def describe(disk: dict[str, Any]) -> str:
    groups = ", ".join(f"{g} {b:,}" for g, b in disk["by_group_per_message"].items())
    return (
        f"SQLite file: {disk['file_bytes']:,} bytes for {disk['messages']:,} messages "
        f"({disk['pages']:,} pages, {disk['conversations']:,} conversations): "
        f"{disk['bytes_per_message']:,} bytes per message ({groups}; page bodies "
        f"{disk['page_body_per_message']:,}, of which message text "
        f"{disk['message_text_per_message']:,})"
    )


async def fill(file: Path, chats: int, turns: int) -> None:
    """`chats` short chats of `turns` turns each through the app, on a fresh `file`."""
    import httpx
    import orjson

    from proxy import create_app
    from proxy.config import load_settings

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _servers import COMPLETION, short_chat_body

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=COMPLETION,
                              headers={"content-type": "application/json"})

    settings = load_settings(environ={}, overrides={
        "store": {"url": f"sqlite:///{file}"},
        "upstream": {"base_url": "http://upstream.bench/v1"},
    })
    app = create_app(settings, upstream_transport=httpx.MockTransport(upstream))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://proxy") as client:
            for chat in range(chats):
                for number in range(chat * turns, (chat + 1) * turns):
                    reply = await client.post(
                        "/v1/chat/completions", content=short_chat_body(chat, number),
                        headers={"content-type": "application/json",
                                 "authorization": "Bearer sk-bench"})
                    assert reply.status_code == 200, reply.text
                    orjson.loads(reply.content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=500)
    parser.add_argument("--turns", type=int, default=4, help="requests per chat")
    parser.add_argument("--file", type=Path, help="measure this database instead")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    file = args.file
    if file is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        file = Path(tempfile.mkdtemp(prefix="vm-storage-")) / "store.db"
        asyncio.run(fill(file, args.chats, args.turns))
    disk = breakdown(file)
    print(describe(disk))
    print(json.dumps(disk, indent=2))
    if args.json:
        payload = {"benchmark": "storage", **disk,
                   "command": "python benchmarks/storage.py " + " ".join(sys.argv[1:])}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
