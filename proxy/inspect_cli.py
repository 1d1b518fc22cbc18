"""`vm-proxy inspect`: the admin API's answers in a terminal, read straight from a store
URL (for servers without a browser).

    vm-proxy inspect [--session NAME] [--tenant T]        conversations, newest first
    vm-proxy inspect CONV [TURN] [--request K] [--json]   a turn replay (TURN -1: latest)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any, TextIO

import orjson

from proxy.admin import reads
from proxy.admin.replay import replay
from proxy.errors import ProxyError
from proxy.store import open_store
from proxy.store.base import StoreError
from proxy.store.sqlite import parse_sqlite_url

# What a stored text may hold that a terminal would obey rather than show: C0 and C1
# controls (escape sequences can clear the screen, retitle the window or forge a verdict
# line) and the bidirectional overrides; newlines and tabs are text.
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069]")


def add_parser(commands: Any) -> None:
    inspect = commands.add_parser(
        "inspect", help="list conversations, or print what a turn sent upstream"
    )
    inspect.add_argument("--config", metavar="FILE", help="TOML settings file")
    inspect.add_argument("--store", metavar="URL", help="page store URL (store.url)")
    inspect.add_argument("conversation", nargs="?", help="a conversation id: replay a turn")
    inspect.add_argument("turn", nargs="?", type=_number, default=-1,
                         help="the turn to replay (default -1: the latest)")  # fmt: skip
    inspect.add_argument("--request", type=_number, default=0,
                         help="which request of the turn (default 0: the first)")  # fmt: skip
    inspect.add_argument("--session", help="list only the conversation of this session name")
    inspect.add_argument("--tenant", help="only this tenant's (its hash)")
    inspect.add_argument("--limit", type=_number, default=50, help="conversations to list")
    inspect.add_argument("--json", action="store_true", help="print the API's JSON")


def _number(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from None
    if not -reads.LARGEST <= value <= reads.LARGEST:
        raise argparse.ArgumentTypeError(f"out of range: {raw}")
    return value


def inspect(url: str, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    missing = missing_file(url)
    if missing is not None:
        # Opening it would create an empty store (and its folders) and list nothing.
        print(f"vm-proxy: no SQLite store at {missing}", file=sys.stderr)
        return 1
    try:
        answer = asyncio.run(_read(url, args))
    except ProxyError as exc:
        print(f"vm-proxy: {exc.message}", file=sys.stderr)
        return 1
    except (StoreError, OSError) as exc:
        print(f"vm-proxy: the store could not be read: {exc}", file=sys.stderr)
        return 1
    if args.json:
        text = orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode()
        # As JSON escapes (orjson writes these raw; the other C0 controls it escapes itself).
        out.write(_UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")
    elif args.conversation is None:
        _print_conversations(answer, _Shown(out))
    else:
        _print_replay(answer, _Shown(out))
    return 0


def missing_file(url: str) -> str | None:
    """The SQLite file `url` names, when it does not exist."""
    if not url.startswith("sqlite:"):
        return None
    try:
        path, _ = parse_sqlite_url(url)
    except ValueError:
        return None  # open_store says what is wrong with it
    return None if path.exists() else str(path)


class _Shown:
    """`out` for stored text: what a terminal would obey is written as an escape."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> None:
        self._out.write(_UNPRINTABLE.sub(_escaped, text))


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


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


def _print_conversations(answer: dict[str, Any], out: _Shown) -> None:
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


def _print_replay(answer: dict[str, Any], out: _Shown) -> None:
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
