"""`vm-proxy inspect`: the admin API's answers in a terminal, read straight from a store
URL (for servers without a browser).

    vm-proxy inspect [--session NAME] [--tenant T]        conversations, newest first
    vm-proxy inspect CONV [TURN] [--request K] [--json]   a turn replay (TURN -1: latest)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO

import orjson

from proxy.admin import reads
from proxy.admin.replay import replay
from proxy.errors import ProxyError
from proxy.store import open_store
from proxy.store.base import StoreError


def add_parser(commands: Any) -> None:
    inspect = commands.add_parser(
        "inspect", help="list conversations, or print what a turn sent upstream"
    )
    inspect.add_argument("--config", metavar="FILE", help="TOML settings file")
    inspect.add_argument("--store", metavar="URL", help="page store URL (store.url)")
    inspect.add_argument("conversation", nargs="?", help="a conversation id: replay a turn")
    inspect.add_argument("turn", nargs="?", type=int, default=-1,
                         help="the turn to replay (default -1: the latest)")  # fmt: skip
    inspect.add_argument("--request", type=int, default=0,
                         help="which request of the turn (default 0: the first)")  # fmt: skip
    inspect.add_argument("--session", help="list only the conversation of this session name")
    inspect.add_argument("--tenant", help="only this tenant's (its hash)")
    inspect.add_argument("--limit", type=int, default=50, help="conversations to list")
    inspect.add_argument("--json", action="store_true", help="print the API's JSON")


def inspect(url: str, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        answer = asyncio.run(_read(url, args))
    except ProxyError as exc:
        print(f"vm-proxy: {exc.message}", file=sys.stderr)
        return 1
    except (StoreError, OSError) as exc:
        print(f"vm-proxy: the store could not be read: {exc}", file=sys.stderr)
        return 1
    if args.json:
        out.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.conversation is None:
        _print_conversations(answer, out)
    else:
        _print_replay(answer, out)
    return 0


async def _read(url: str, args: argparse.Namespace) -> dict[str, Any]:
    store = await open_store(url)
    try:
        if args.conversation is None:
            return await reads.conversations(store, tenant=args.tenant, session=args.session,
                                             limit=args.limit)  # fmt: skip
        found = await reads.find(store, args.conversation, args.tenant)
        return await replay(store, found, args.turn, request=args.request)
    finally:
        await store.close()


def _print_conversations(answer: dict[str, Any], out: TextIO) -> None:
    rows = answer["data"]
    if not rows:
        out.write("no conversations\n")
        return
    header = ("id", "session", "tenant", "turns", "pages", "tokens", "last used")
    table = [header] + [
        (c["id"], c["session"] or "-", c["tenant"][:14], str(c["turns"]), str(c["pages"]),
         str(c["tokens"]), c["last_used"])
        for c in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                  .rstrip() + "\n")  # fmt: skip


def _print_replay(answer: dict[str, Any], out: TextIO) -> None:
    check = answer.get("check") or {}
    same = check.get("same")
    verdict = ("rebuilt: the same bytes as sent" if same is True
               else "rebuilt, differs: " + "; ".join(check.get("differences") or [])
               if same is False else str(check.get("note") or "not rebuilt"))  # fmt: skip
    tokens = answer.get("tokens") or {}
    out.write(f"conversation {answer['conversation']}  turn {answer['turn']}"
              f"  request {answer['request'] + 1} of {answer['requests']}\n")  # fmt: skip
    out.write(f"{verdict}\n")
    if tokens:
        parts = ", ".join(f"{k} {v}" for k, v in tokens.items() if v is not None)
        out.write(f"tokens: {parts}\n")
    pinned = [p["id"] for p in answer.get("pinned") or ()]
    out.write(f"pinned ({len(pinned)}): {', '.join(pinned)}\n")
    mapped = answer.get("mapped") or []
    shown = ", ".join(f"{m['id']}@{m['level']}" + ("e" if m.get("excerpt_words") else "")
                      for m in mapped)  # fmt: skip
    out.write(f"mapped ({len(mapped)}): {shown}\n")
    for fault in answer.get("faults") or ():
        out.write(f"fault: {fault['id']} at level {fault['level']}\n")
    for search in answer.get("searches") or ():
        out.write(f"search: {search.get('query')!r} -> {', '.join(search.get('hits') or [])}\n")
    body = answer.get("upstream_request")
    if not body:
        return
    for index, message in enumerate(body.get("messages") or body.get("input") or ()):
        role = message.get("role") or message.get("type") or "item"
        content = message.get("content")
        text = content if isinstance(content, str) else orjson.dumps(
            content if content is not None else message).decode()
        out.write(f"\n--- {index}: {role} ---\n{text}\n")
