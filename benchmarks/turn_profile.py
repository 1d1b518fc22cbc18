"""Memory-active turns in process, for a profiler: what `vm_turn.py` times, without the timing.

The app runs as in vm_turn.py (in-process ASGI, an upstream that answers at once, the
default SQLite store behind the page cache, budget 8000, 1,000 turns of history); the
history is stored by a first request, then `--requests` memory-active turns follow, each
the whole history plus one new question. Under `valgrind --tool=callgrind` the
instructions of one turn are the difference between two runs of different `--requests`,
divided by the difference (load-independent, unlike wall-clock time):

    valgrind --tool=callgrind python benchmarks/turn_profile.py --requests 5 --db /tmp/t.db
    valgrind --tool=callgrind python benchmarks/turn_profile.py --requests 25 --db /tmp/t.db

`--db PATH`: the stored history is kept there after the first run and copied for the next
ones (storing 2,000 messages costs more than the turns measured). `--cprofile FILE`: the
turns' cProfile (setup left out). `--mode off` runs the pass-through instead.
`--default-gc`: the garbage collector at Python's defaults, not as `serve` sets it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vm_turn import conversation, upstream  # noqa: E402

from proxy import create_app  # noqa: E402
from proxy.cli import settle_heap  # noqa: E402
from proxy.config import load_settings  # noqa: E402
from proxy.store import open_store  # noqa: E402

TURNS = 1000
BUDGET = 8000
# Turns run before the measured ones, so caches are as in a conversation under way.
WARM_UP = 2


async def run(
    requests: int, mode: str, db: Path | None, cprofile: Path | None, default_gc: bool = False
) -> None:
    target = Path(tempfile.mkdtemp(prefix="vm-turn-profile-")) / "bench.db"
    seeded = db is not None and db.exists()
    if db is not None and seeded:
        shutil.copy(db, target)
    url = f"sqlite:///{target}"
    settings = load_settings(environ={}, overrides={
        "vm": {"context_budget": BUDGET, "activate_above": BUDGET // 2},
        "store": {"url": url},
        "upstream": {"base_url": "http://upstream.bench/v1"},
    })
    store = await open_store(url, cache_pages=settings.store.cache_pages)
    app = create_app(settings, upstream_transport=httpx.MockTransport(upstream), store=store)
    headers = {"content-type": "application/json"}
    if mode == "off":
        headers["x-vm-mode"] = "off"
    messages: list[dict[str, Any]] = [*conversation(TURNS), {"role": "user", "content": "Hi."}]
    if not default_gc:
        settle_heap()
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://proxy") as client:
            first = await client.post("/v1/chat/completions",
                                      json={"model": "gpt-4o", "messages": messages})
            messages.append(first.json()["choices"][0]["message"])
            if db is not None and not seeded:
                await store.close()
                shutil.copy(target, db)
                print(f"stored the history in {db}; run again to measure")
                return
            profile = cProfile.Profile() if cprofile is not None else None
            for i in range(requests + WARM_UP):
                if i == WARM_UP and profile is not None:
                    profile.enable()
                messages.append({"role": "user", "content": f"Q {i}: and taxes?"})
                raw = orjson.dumps({"model": "gpt-4o", "messages": messages})
                response = await client.post("/v1/chat/completions", content=raw,
                                             headers=headers)
                assert response.status_code == 200, response.text
                messages.append(response.json()["choices"][0]["message"])
            if profile is not None and cprofile is not None:
                profile.disable()
                profile.dump_stats(cprofile)
                pstats.Stats(str(cprofile)).sort_stats("cumulative").print_stats(40)
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--mode", choices=("on", "off"), default="on")
    parser.add_argument("--db", type=Path, help="keep the stored history here (see above)")
    parser.add_argument("--cprofile", type=Path, help="write the turns' cProfile here")
    parser.add_argument("--default-gc", action="store_true",
                        help="leave the garbage collector at Python's defaults")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.mode, args.db, args.cprofile, args.default_gc))


if __name__ == "__main__":
    main()
