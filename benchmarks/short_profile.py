"""Short chats in process, for a profiler: what `overhead.py` drives over HTTP, without sockets.

The app runs with the default settings (memory on, the SQLite store in a fresh temporary
file, or `--store memory://`) in-process (ASGI) with an upstream that answers at once, and
`--clients` workers send `--requests` requests in all, each a turn of a short chat
resending its history (benchmarks/_servers.py's `short_chat_body`: `--turns` turns a chat,
4 by default, as overhead.py sends). Under `valgrind --tool=callgrind` the instructions of
one request are the difference between two runs of different `--requests`, divided by the
difference; the store's writer and reader threads are counted too (load-independent,
unlike the CPU time overhead.py reads from /proc):

    valgrind --tool=callgrind python benchmarks/short_profile.py --requests 200
    valgrind --tool=callgrind python benchmarks/short_profile.py --requests 600

`--mode off` runs the pass-through, for scale; `--cprofile FILE` writes the measured
requests' profile (the event loop's thread only); `--ablate NAME` takes a part of the turn
out, an experiment (benchmarks/_ablations.py). `instructions.py` runs these under callgrind
and reports the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _ablations  # noqa: E402
import _servers  # noqa: E402

from proxy import create_app  # noqa: E402
from proxy.cli import settle_heap  # noqa: E402
from proxy.config import load_settings  # noqa: E402
from proxy.store import open_store  # noqa: E402

# Requests sent before the measured ones, so that caches and the heap are as under way.
WARM_UP = 64


def upstream(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=_servers.COMPLETION,
                          headers={"content-type": "application/json"})


async def run(
    requests: int, clients: int, store_url: str, mode: str, cprofile: Path | None,
    chat: str = "short",
) -> None:
    if store_url == "sqlite":
        store_url = f"sqlite:///{tempfile.mkdtemp(prefix='vm-short-profile-')}/bench.db"
    settings = load_settings(environ={}, overrides={
        "store": {"url": store_url}, "upstream": {"base_url": "http://upstream.bench/v1"},
    })
    store = await open_store(store_url, cache_pages=settings.store.cache_pages)
    app = create_app(settings, upstream_transport=httpx.MockTransport(upstream), store=store)
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    if mode == "off":
        headers["x-vm-mode"] = "off"
    settle_heap()
    profile = cProfile.Profile() if cprofile is not None else None
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://proxy") as client:

            async def worker(index: int, first: int, count: int) -> None:
                for number in range(first, first + count):
                    body = (_servers.CHAT_BODY if chat == "same"
                            else _servers.short_chat_body(index, number))
                    response = await client.post("/v1/chat/completions", content=body,
                                                 headers=headers)
                    assert response.status_code == 200, response.text

            def share(total: int) -> list[int]:
                return [total // clients + (i < total % clients) for i in range(clients)]

            warm = share(WARM_UP)
            await asyncio.gather(*(worker(i, 0, n) for i, n in enumerate(warm)))
            if profile is not None:
                profile.enable()
            await asyncio.gather(*(worker(i, warm[i], n)
                                   for i, n in enumerate(share(requests))))
            if profile is not None and cprofile is not None:
                profile.disable()
                profile.dump_stats(cprofile)
                pstats.Stats(str(cprofile)).sort_stats("tottime").print_stats(30)
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--turns", type=int, default=_servers.SHORT_TURNS,
                        help="turns of each short chat")
    parser.add_argument("--store", default="sqlite", help="sqlite (a fresh file) or a URL")
    parser.add_argument("--mode", choices=("on", "off"), default="on")
    parser.add_argument("--cprofile", type=Path, help="write the requests' cProfile here")
    parser.add_argument("--chat", choices=("short", "same"), default="short",
                        help="short chats, or one body for every request (as wrk sends)")
    parser.add_argument("--ablate", choices=_ablations.ABLATIONS, default="none",
                        help="take a part of the turn out (an experiment: _ablations.py)")
    args = parser.parse_args()
    _servers.SHORT_TURNS = args.turns
    _ablations.apply(args.ablate)
    asyncio.run(run(args.requests, args.clients, args.store, args.mode, args.cprofile,
                    args.chat))


if __name__ == "__main__":
    main()
