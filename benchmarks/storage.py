"""Bytes on disk per stored message of the SQLite store, by what they hold (issue 15).

    python benchmarks/storage.py [--chats 500] [--turns 4] [--json out.json]
    python benchmarks/storage.py --file data/vm-proxy.db     # an existing database
    python benchmarks/storage.py --api responses             # the chats as Responses requests

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


def _response(number: int, text: str) -> bytes:
    """A Response of one message item, shaped as the recorded OpenAI ones (ids of 48 hex
    digits, `annotations` and `logprobs` in its part)."""
    import orjson

    digits = f"{number:048x}"
    return orjson.dumps({
        "id": f"resp_{digits}", "object": "response", "created_at": 1_700_000_000,
        "status": "completed", "model": "gpt-4o-2024-08-06",
        "output": [{"id": f"msg_{digits}", "type": "message", "status": "completed",
                    "role": "assistant", "content": [
                        {"type": "output_text", "text": text, "annotations": [],
                         "logprobs": []}]}],
        "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": 16}})


async def fill(
    file: Path, chats: int, turns: int, api: str = "chat", answer_chars: int = 0
) -> None:
    """`chats` short chats of `turns` turns each through the app, on a fresh `file`.
    `api` "responses": the same chats as a Responses client sends them (each request its
    history as input items, the answers as the API gave them). `answer_chars`: answers of
    about that many characters instead of the fake upstream's one short line."""
    import itertools

    import httpx
    import orjson

    from proxy import create_app
    from proxy.config import load_settings

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _servers import COMPLETION, short_chat_body

    completion = orjson.loads(COMPLETION)
    answer = completion["choices"][0]["message"]["content"]
    if answer_chars:
        words = "Here is what I know about it, with a few details worth keeping in mind."
        answer = (words + " ") * (answer_chars // (len(words) + 1) + 1)
        answer = answer[:answer_chars].rstrip()
        completion["choices"][0]["message"]["content"] = answer
    chat_reply = orjson.dumps(completion)
    numbers = itertools.count(1)

    def upstream(request: httpx.Request) -> httpx.Response:
        content = (chat_reply if request.url.path.endswith("/chat/completions")
                   else _response(next(numbers), answer))
        return httpx.Response(200, content=content,
                              headers={"content-type": "application/json"})

    settings = load_settings(environ={}, overrides={
        "store": {"url": f"sqlite:///{file}"},
        "upstream": {"base_url": "http://upstream.bench/v1"},
    })
    app = create_app(settings, upstream_transport=httpx.MockTransport(upstream))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://proxy") as client:
            headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
            for chat in range(chats):
                # Each request resends the history, with the answers as they came: the
                # questions are short_chat_body's (overhead.py's short chats).
                history: list[Any] = []
                for number in range(chat * turns, (chat + 1) * turns):
                    question = orjson.loads(short_chat_body(chat, number))["messages"][-1]
                    history.append(question)
                    if api == "chat":
                        reply = await client.post(
                            "/v1/chat/completions", headers=headers,
                            content=orjson.dumps({"model": "fake-model", "messages": history}))
                        assert reply.status_code == 200, reply.text
                        history.append(orjson.loads(reply.content)["choices"][0]["message"])
                        continue
                    reply = await client.post(
                        "/v1/responses", headers=headers,
                        content=orjson.dumps({"model": "fake-model", "input": history}))
                    assert reply.status_code == 200, reply.text
                    history.extend(orjson.loads(reply.content)["output"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=500)
    parser.add_argument("--turns", type=int, default=4, help="requests per chat")
    parser.add_argument("--api", choices=("chat", "responses"), default="chat",
                        help="the chats as chat completions or as Responses requests")
    parser.add_argument("--answer-chars", type=int, default=0,
                        help="answers of about this many characters (0: one short line)")
    parser.add_argument("--file", type=Path, help="measure this database instead")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    file = args.file
    if file is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        file = Path(tempfile.mkdtemp(prefix="vm-storage-")) / "store.db"
        asyncio.run(fill(file, args.chats, args.turns, args.api, args.answer_chars))
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
