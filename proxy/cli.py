"""The `vm-proxy` command: `serve`, `gc`, `inspect` (proxy.inspect_cli), `--version`.

Settings come from built-in defaults, then `--config FILE`, then `VM_PROXY_*` variables,
then the flags. A bad setting is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc as collector  # `gc` is also the name of a command here
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import uvicorn

from proxy import __version__
from proxy.config import Settings, SettingsError, load_settings, resolve_embeddings
from proxy.embeddings import check_embedder
from proxy.embeddings.base import EmbeddingError
from proxy.http.app import create_app
from proxy.inspect_cli import add_parser as add_inspect_parser
from proxy.inspect_cli import inspect, missing_file
from proxy.logs import configure as configure_logging
from proxy.store import open_store

EXIT_BAD_SETTING = 2
# What uvicorn exits with when it cannot start (a port taken): a store or an embeddings
# provider that cannot open stops start-up the same way.
EXIT_NOT_STARTED = 3
# Python's default is (700, 10, 10); see settle_heap().
GC_THRESHOLDS = (50_000, 20, 10)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vm-proxy",
        description="An OpenAI-compatible proxy that gives chat apps virtual memory.",
    )
    parser.add_argument("--version", action="version", version=f"vm-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", metavar="FILE", help="TOML settings file")
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (server.port)")
    serve.add_argument(
        "--upstream", metavar="URL", help="upstream API base URL (upstream.base_url)"
    )
    serve.add_argument("--store", metavar="URL", help="page store URL (store.url)")

    gc = commands.add_parser("gc", help="delete conversations past their retention")
    gc.add_argument("--config", metavar="FILE", help="TOML settings file")
    gc.add_argument("--store", metavar="URL", help="page store URL (store.url)")
    gc.add_argument(
        "--older-than-days",
        type=float,
        metavar="N",
        help="delete conversations untouched for N days (default: store.retention_days)",
    )
    add_inspect_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_SETTING
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"vm-proxy: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    if args.command == "serve":
        return serve(settings)
    if args.command == "inspect":
        return inspect(settings.store.url, args)
    return gc(settings, args.older_than_days)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, dict[str, Any]] = {"store": {"url": args.store}}
    if args.command == "serve":
        overrides["server"] = {"host": args.host, "port": args.port}
        overrides["upstream"] = {"base_url": args.upstream}
    return load_settings(args.config, overrides=overrides)


def serve(settings: Settings) -> int:
    configure_logging(settings.server.log_level)
    problem = _cannot_start(settings)
    if problem is not None:
        print(f"vm-proxy: {problem}", file=sys.stderr)
        return EXIT_NOT_STARTED
    config = uvicorn.Config(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        lifespan="on",
        # The proxy writes its own access line per request (proxy.logs).
        access_log=False,
        log_config=None,
        log_level=settings.server.log_level,
        server_header=False,
        # The proxy never uses the client's address; X-Forwarded-* parsing is wasted work.
        proxy_headers=False,
        timeout_graceful_shutdown=math.ceil(settings.server.shutdown_timeout_s),
    )
    server = uvicorn.Server(config)
    config.load()  # imports the protocol modules now, so that settle_heap() covers them
    settle_heap()
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # Ctrl+C while starting or stopping: the server has stopped, nothing to report
    # uvicorn reports a failed start-up (port taken, store unreachable) by not starting.
    return 0 if server.started else 1


def _cannot_start(settings: Settings) -> str | None:
    """What would stop start-up, found before the server starts, as one line: the store
    cannot be opened, or an embeddings provider the settings name cannot run (its extra or
    its files missing; not loaded here). (Failing in the server's start-up, each was a
    traceback.) The store is opened again by the server."""

    async def open_and_close() -> None:
        store = await open_store(settings.store.url)
        await store.close()

    try:
        asyncio.run(open_and_close())
    except Exception as exc:  # whatever the backend raises, said in one line
        return f"the store cannot be opened: {_reason(exc)}"
    embeddings = resolve_embeddings(settings).embeddings
    if settings.embeddings.provider not in ("auto", "off"):
        try:
            check_embedder(embeddings)
        except EmbeddingError as exc:
            return f"embeddings.provider = {settings.embeddings.provider!r} cannot run: {exc}"
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def settle_heap() -> None:
    """Take what start-up built out of the garbage collector's sight, and collect less often.

    Under concurrency the objects of the requests in flight outlive young collections and
    are promoted; every few thousand requests that sets off a full collection, which walks
    every module, class and function imported (some 50k objects). At 8 to 64 clients that
    cost 20 to 50 µs of CPU per request. Frozen objects are never walked, and a larger
    first threshold promotes fewer in-flight objects.

    The young collection itself walks every object of the requests in flight made since
    the last one: with memory on, 64 clients' short chats keep some 19k of them (1,800
    coroutines among them), and at a first threshold of 7,000 the collector took 2 ms of
    every 7,000 allocations, 70-90 µs of CPU a request. At 50,000 it is under 30 µs
    (benchmarks/overhead.py, issue 15); young garbage waits longer, a few MB at most.
    """
    collector.collect()
    collector.freeze()
    collector.set_threshold(*GC_THRESHOLDS)


def gc(settings: Settings, older_than_days: float | None) -> int:
    days = settings.store.retention_days if older_than_days is None else older_than_days
    if older_than_days is None and days == 0:
        print("vm-proxy: store.retention_days is 0 (retention off); nothing deleted.")
        return 0
    if not math.isfinite(days) or days < 0:
        print("vm-proxy: --older-than-days must be a number of days, 0 or more", file=sys.stderr)
        return EXIT_BAD_SETTING
    missing = missing_file(settings.store.url)
    if missing is not None:
        print(f"vm-proxy: no SQLite store at {missing}", file=sys.stderr)
        return 1
    try:
        deleted = asyncio.run(_collect(settings.store.url, time.time() - days * 86400))
    except Exception as exc:  # unreachable, corrupt, refused: one line, not a traceback
        print(f"vm-proxy: the store could not be collected: {_reason(exc)}", file=sys.stderr)
        return 1
    print(f"vm-proxy: deleted {deleted} conversation(s) untouched for {days:g} day(s).")
    return 0


async def _collect(url: str, older_than: float) -> int:
    store = await open_store(url)
    try:
        return await store.gc(older_than)
    finally:
        await store.close()
