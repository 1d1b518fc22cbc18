"""Added latency of a VM-active turn, against a pure pass-through measured in the same run.

The app runs in-process (ASGI, no sockets) with an upstream that answers at once, so what
is timed is the proxy's own work. Each request resends a conversation of N turns plus one
new user message, as chat apps do; the pass-through arm sends the same requests with
`X-VM-Mode: off`. Added latency = VM p50 - pass-through p50. Also reported: the prompt
tokens sent upstream against what the full history costs (the X-VM-* headers).

The store is opened as the app opens it: behind the in-process page cache of
`store.cache_pages` (the default setting unless `--cache-pages` says otherwise; 0: none).
Each (store, cache) pair runs on a fresh database. `--short-between K` sends K one-message
chats of other clients (not timed) before each measured request: their pages pass through
the same store and page cache (with a small `--cache-pages`, as many as would crowd the
cache out between two turns of a busy server).

The garbage collector is set as `vm-proxy serve` sets it (proxy.cli.settle_heap: what
start-up built frozen, a larger first threshold), or left at Python's defaults with
`--default-gc` (how this benchmark ran before; a full collection then walks every module
every few dozen turns, and the request's objects are promoted while it packs).

`--summarizer off,on` runs each pair twice, `vm.summarizer` off and naming a model the
upstream answers at once with a valid summary: the summarizer works in the background, so
a turn should take as long with it as without (reported as the ratio of VM p50s, on/off).
The backlog the stored history makes (one summary per 8 turns) is drained before the
measured requests; during them, every 8th request closes a segment and queues a call.

    python benchmarks/vm_turn.py [--turns 1000] [--requests 60] [--store memory://]
    python benchmarks/vm_turn.py --cache-pages 20000,0 --json benchmarks/results/vm_turn.json
    python benchmarks/vm_turn.py --summarizer off,on --rounds 3 --requests 120
    python benchmarks/vm_turn.py --store postgresql://postgres@127.0.0.1:5432/test [--analyze]
    python benchmarks/vm_turn.py --against 4942621 --rounds 2 --store memory:// --store sqlite

`--against REV` measures the code at git revision REV in the same run: it is checked out in a
temporary worktree with this script copied in, and the two run alternately, each arm in a
process of its own, `--rounds` times (issue 15 asks that a memory-active turn add no more
than it did when the issue was filed, 4942621; machines differ too much between sessions
for a figure of another day to compare with).

A PostgreSQL URL runs in a schema of its own, dropped after the run. Its tables are new, so
the planner has no statistics of them until autovacuum analyzes them (a new deployment's
first minutes); `--analyze` runs VACUUM ANALYZE once the history is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

# This checkout's code, not the installed one: run from another worktree, the script
# measures that worktree.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy import create_app  # noqa: E402
from proxy.config import load_settings  # noqa: E402
from proxy.store import open_store  # noqa: E402
from proxy.store.postgres import PostgresStore  # noqa: E402

try:
    from proxy.cli import settle_heap
except ImportError:  # code older than it (--against): it served with Python's defaults
    def settle_heap() -> None:
        pass

TOPICS = ["gardening", "taxes", "rust lifetimes", "sourdough", "cycling", "chess openings",
          "postgres vacuum", "jazz harmony", "kubernetes", "tea", "orbital mechanics", "knitting"]


def conversation(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(turns):
        topic = TOPICS[i % len(TOPICS)]
        messages.append({"role": "user", "content": f"Question {i} about {topic}: what should "
                         f"I know about {topic} when I am starting out, case {i * 7 % 101}?"})
        messages.append({"role": "assistant", "content": f"For {topic}, start small: the first "
                         f"thing is practice, the second is patience (note {i}). Keep notes on "
                         f"what worked and revisit them weekly."})
    return messages


SUMMARIZER = "bench-summarizer"
SUMMARY = orjson.dumps({"summary": "A stretch of questions on hobbies and chores.",
                        "points": ["practice", "patience"], "abstracts": {}, "claims": []})


def upstream(request: httpx.Request) -> httpx.Response:
    if orjson.loads(request.content).get("model") == SUMMARIZER:
        return httpx.Response(200, content=orjson.dumps({
            "id": "chatcmpl-sum", "object": "chat.completion", "created": 1,
            "model": SUMMARIZER,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": SUMMARY.decode()}}],
            "usage": {"prompt_tokens": 500, "completion_tokens": 30, "total_tokens": 530},
        }), headers={"content-type": "application/json"})
    body = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Noted."},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}
    return httpx.Response(200, content=orjson.dumps(body),
                          headers={"content-type": "application/json"})


async def run(
    turns: int, requests: int, store_url: str, budget: int, cache_pages: int | None = None,
    summarizer: bool = False, default_gc: bool = False, short_between: int = 0,
    analyze: bool = False,
) -> dict[str, Any]:
    store_settings: dict[str, Any] = {"url": store_url}
    if cache_pages is not None:
        store_settings["cache_pages"] = cache_pages
    settings = load_settings(environ={}, overrides={
        "vm": {"context_budget": budget, "activate_above": budget // 2,
               # (Named only when on: code older than the setting (--against) refuses it.)
               **({"summarizer": SUMMARIZER, "summarizer_daily_tokens": 10**9}
                  if summarizer else {})},
        "store": store_settings,
        "upstream": {"base_url": "http://upstream.bench/v1"},
    })
    store = await open_store(store_url, cache_pages=settings.store.cache_pages)
    postgres = getattr(store, "inner", store)
    app = create_app(settings, upstream_transport=httpx.MockTransport(upstream), store=store)
    history = conversation(turns)
    if not default_gc:
        settle_heap()
    results: dict[str, Any] = {
        "turns": turns, "requests": requests, "store": store_url.split(":")[0],
        "cache_pages": settings.store.cache_pages, "summarizer": summarizer,
        "gc": "default" if default_gc else "serve", "short_between": short_between,
        "analyzed": analyze,
    }
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://proxy") as client:
            # Store the history once (the first request of a conversation pays for it).
            first = [*history, {"role": "user", "content": "Hello again."}]
            await client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": first})
            if analyze and isinstance(postgres, PostgresStore):
                await postgres.vacuum_analyze()
            background = getattr(app.state, "summarizer", None)
            if background is not None:
                started = time.perf_counter()
                await background.idle()
                results["backlog_s"] = round(time.perf_counter() - started, 2)
                results["backlog_calls"] = _summarizer_calls(app)
            for arm, headers in (("passthrough", {"x-vm-mode": "off"}), ("vm", {})):
                latencies: list[float] = []
                sent = full = 0
                messages = [*history, {"role": "user", "content": "Hello again."},
                            {"role": "assistant", "content": "Noted."}]
                for i in range(requests):
                    # Other clients' short chats meanwhile (not timed): their pages go
                    # through the same store and page cache.
                    for k in range(short_between):
                        short = [{"role": "user", "content": f"Short chat {arm} {i}.{k}: hi?"}]
                        await client.post("/v1/chat/completions",
                                          json={"model": "gpt-4o", "messages": short})
                    # The conversation goes on as chat apps send it: the whole history, the
                    # model's last answer, and one new question.
                    messages.append({"role": "user", "content": f"Q {arm} {i}: and taxes?"})
                    raw = orjson.dumps({"model": "gpt-4o", "messages": messages})
                    started = time.perf_counter()
                    response = await client.post("/v1/chat/completions", content=raw,
                                                 headers={**headers,
                                                          "content-type": "application/json"})
                    latencies.append((time.perf_counter() - started) * 1000.0)
                    assert response.status_code == 200, response.text
                    messages.append(response.json()["choices"][0]["message"])
                    sent = int(response.headers.get("x-vm-prompt-tokens", 0))
                    full = int(response.headers.get("x-vm-prompt-tokens-full", 0))
                latencies.sort()
                results[arm] = {
                    "p50_ms": round(statistics.median(latencies), 2),
                    "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
                }
                if arm == "vm":
                    results["prompt_tokens_sent"] = sent
                    results["prompt_tokens_full"] = full
            if background is not None:
                await background.idle()
                results["calls_while_measured"] = (
                    _summarizer_calls(app) - results["backlog_calls"])
    if isinstance(postgres, PostgresStore):
        await postgres.drop_schema()
    await store.close()
    results["added_p50_ms"] = round(results["vm"]["p50_ms"] - results["passthrough"]["p50_ms"], 2)
    if results["prompt_tokens_full"]:
        results["tokens_saved"] = round(
            1 - results["prompt_tokens_sent"] / results["prompt_tokens_full"], 3)
    return results


def _summarizer_calls(app: Any) -> int:
    """Summarizer calls made so far that wrote their summary."""
    metrics = app.state.metrics.render()
    for line in metrics.splitlines():
        if line.startswith('vm_summarizer_calls_total{outcome="ok"}'):
            return int(float(line.split()[-1]))
    return 0


def fresh(url: str) -> str:
    """A new database for each run: a SQLite file (`sqlite`), or a PostgreSQL schema of
    its own (dropped after the run): a run on a database earlier runs filled would find
    the same conversation stored, and place its turns on forks of it."""
    if url == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='vm-turn-')}/bench.db"
    if url.startswith(("postgresql:", "postgres:")):
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}schema=vm_turn_{uuid.uuid4().hex[:10]}"
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--budget", type=int, default=8000)
    parser.add_argument("--store", action="append",
                        help="store URL(s); default memory:// and a fresh SQLite file")
    parser.add_argument("--cache-pages", default="",
                        help="comma-separated store.cache_pages values (default: the app's)")
    parser.add_argument("--summarizer", default="off",
                        help="comma-separated: off, on (vm.summarizer naming an instant model)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every arm this often")
    parser.add_argument("--default-gc", action="store_true",
                        help="leave the garbage collector at Python's defaults (see above)")
    parser.add_argument("--short-between", type=int, default=0,
                        help="one-message chats sent (not timed) before each measured request")
    parser.add_argument("--analyze", action="store_true",
                        help="PostgreSQL: VACUUM ANALYZE once the history is stored (what"
                        " autovacuum does in time); without it the planner has no statistics"
                        " of the new tables, as on a new deployment")
    parser.add_argument("--against", metavar="REV",
                        help="also measure the code at git revision REV, alternately (above)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.against:
        compare(args)
        return
    stores = args.store or ["memory://", "sqlite"]
    caches = [int(c) for c in args.cache_pages.split(",") if c] or [None]
    modes = [m == "on" for m in args.summarizer.split(",") if m]
    out = [asyncio.run(run(args.turns, args.requests, fresh(url), args.budget, cache, mode,
                           args.default_gc, args.short_between, args.analyze))
           for _ in range(args.rounds) for url in stores for cache in caches for mode in modes]
    rows = []
    for index, r in enumerate(out):
        print(f"{r['store']:>7} cache {r['cache_pages']:>5} {r['turns']} turns"
              f" short chats between {r['short_between']}"
              f" summarizer {'on' if r['summarizer'] else 'off'} gc {r['gc']}"
              f"{' analyzed' if r['analyzed'] else ''}: pass-through"
              f" p50 {r['passthrough']['p50_ms']} ms p99 {r['passthrough']['p99_ms']} ms |"
              f" VM p50 {r['vm']['p50_ms']} ms p99"
              f" {r['vm']['p99_ms']} ms | added p50 {r['added_p50_ms']} ms | prompt tokens"
              f" {r['prompt_tokens_sent']} of {r['prompt_tokens_full']}"
              f" ({100 * r.get('tokens_saved', 0):.1f}% saved)")
        if r["summarizer"]:
            # Ratio to the run right before it, the same store with the summarizer off.
            before = out[index - 1] if index else None
            ratio = (f"; VM p50 {r['vm']['p50_ms'] / before['vm']['p50_ms']:.3f}x the run"
                     " before (off)" if before is not None and not before["summarizer"] else "")
            print(f"  summarizer on: a backlog of {r['backlog_calls']} calls drained in"
                  f" {r['backlog_s']} s; {r['calls_while_measured']} calls while"
                  f" measured{ratio}")
        rows.append({
            "store": r["store"], "cache_pages": r["cache_pages"], "turns": r["turns"],
            "requests": r["requests"],
            "passthrough_p50_ms": r["passthrough"]["p50_ms"],
            "passthrough_p99_ms": r["passthrough"]["p99_ms"],
            "vm_p50_ms": r["vm"]["p50_ms"], "vm_p99_ms": r["vm"]["p99_ms"],
            "added_p50_ms": r["added_p50_ms"],
            "prompt_tokens_sent": r["prompt_tokens_sent"],
            "prompt_tokens_full": r["prompt_tokens_full"],
            "tokens_saved": r.get("tokens_saved"), "summarizer": r["summarizer"],
            "summarizer_calls_while_measured": r.get("calls_while_measured"),
            "gc": r["gc"], "analyzed": r["analyzed"],
        })
    if args.json:
        payload = {
            "benchmark": "vm_turn",
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "settings": {"turns": args.turns, "requests": args.requests,
                         "budget": args.budget},
            "rows": rows,
            "command": "python benchmarks/vm_turn.py " + " ".join(sys.argv[1:]),
            "note": "in-process ASGI app, upstream answering at once; added_p50_ms = VM p50"
                    " - pass-through p50 of the same run; cache_pages: the page cache in"
                    " front of the store (the app's default is 20000). Noisy 2-core machine"
                    " shared with other work.",
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


def _arm_argv(args: argparse.Namespace, json_path: Path) -> list[str]:
    """This run's options for one arm of one round (`--against`)."""
    argv = ["--turns", str(args.turns), "--requests", str(args.requests),
            "--budget", str(args.budget), "--summarizer", args.summarizer,
            "--short-between", str(args.short_between), "--json", str(json_path)]
    for url in args.store or []:
        argv += ["--store", url]
    if args.cache_pages:
        argv += ["--cache-pages", args.cache_pages]
    if args.default_gc:
        argv.append("--default-gc")
    if args.analyze:
        argv.append("--analyze")
    return argv


def compare(args: argparse.Namespace) -> None:
    """This checkout against revision `args.against`, alternately, each arm a process."""
    here = Path(__file__).resolve()
    repo = here.parents[1]
    scratch = Path(tempfile.mkdtemp(prefix="vm-turn-against-"))
    before = scratch / "code"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet",
                    str(before), args.against], check=True)
    try:
        # The same script measures both: the one at REV may be older, or import the
        # installed package instead of its own checkout.
        shutil.copy(here, before / "benchmarks" / "vm_turn.py")
        arms = {f"before ({args.against})": before / "benchmarks" / "vm_turn.py",
                "after (this checkout)": here}
        rows: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
        for round_ in range(args.rounds):
            for arm, script in arms.items():
                out = scratch / f"{round_}-{len(rows[arm])}.json"
                subprocess.run([sys.executable, str(script), *_arm_argv(args, out)],
                               check=True, stdout=subprocess.DEVNULL)
                for row in json.loads(out.read_text())["rows"]:
                    rows[arm].append(row)
                    print(f"{arm:>24} round {round_ + 1}: {row['store']:>10}"
                          f" added p50 {row['added_p50_ms']} ms (VM p50 {row['vm_p50_ms']},"
                          f" pass-through {row['passthrough_p50_ms']}), prompt tokens"
                          f" {row['prompt_tokens_sent']}")
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(before)],
                       check=False)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    (old_arm, old), (new_arm, new) = rows.items()
    summary = []
    for store in dict.fromkeys(r["store"] for r in new):
        then = [r["added_p50_ms"] for r in old if r["store"] == store]
        now = [r["added_p50_ms"] for r in new if r["store"] == store]
        ratio = statistics.median(now) / statistics.median(then)
        print(f"{store:>10}: added p50 {min(then)}-{max(then)} ms before, {min(now)}-{max(now)}"
              f" ms after: {ratio:.2f}x (medians)")
        summary.append({"store": store, "before_added_p50_ms": then,
                        "after_added_p50_ms": now, "after_over_before": round(ratio, 3)})
    if args.json:
        payload = {
            "benchmark": "vm_turn --against",
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "against": args.against,
            "summary": summary,
            "rows": {old_arm: old, new_arm: new},
            "command": "python benchmarks/vm_turn.py " + " ".join(sys.argv[1:]),
            "note": "each arm in a process of its own, alternated round by round; added p50"
                    " = VM p50 - pass-through p50 of the same arm. Code older than"
                    " proxy.cli.settle_heap ran with Python's default collector, as it"
                    " served then.",
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
