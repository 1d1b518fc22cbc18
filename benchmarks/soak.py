"""Does the proxy hold steady over many requests? (issue 13)

    python benchmarks/soak.py [--requests 20000] [--concurrency 8] [--max-seconds 900]

Starts the fake upstream of benchmarks/stall.py and `vm-proxy serve` (SQLite store in a
temporary folder, memory active above 300 tokens so session turns run the fault loop) on
loopback, then sends a mix of requests from `--concurrency` clients: short one-message
chats, turns of 64 `X-VM-Session` conversations (one new message each, so they grow past
the threshold), and short streams. Every `--every` requests it samples the proxy's RSS and
open file descriptors (from /proc), and prints the curve; flat after warm-up is the goal.
Stops after `--requests` or `--max-seconds`, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stall import free_port, wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = 64
FILLER = "We talked about the garden, the budget and the trip to the coast. "


def rss_and_fds(pid: int) -> tuple[float, int]:
    """The process's resident set (MB) and open file descriptors, read from /proc."""
    rss_kb = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def request_for(n: int) -> tuple[dict[str, Any], dict[str, str]]:
    kind = n % 3
    headers = {"authorization": f"Bearer sk-soak-{n % 4}"}
    if kind == 0:
        body = {"model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"Short question {n}?"}]}
    elif kind == 1:
        headers["x-vm-session"] = f"soak-{n % SESSIONS}"
        body = {"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": f"Turn {n}: {FILLER * 3}What did we say about {n % 7}?"}]}
    else:
        body = {"model": "gpt-4o-mini", "stream": True,
                "messages": [{"role": "user", "content": f"Stream {n}, please."}]}
    return body, headers


async def drive(port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    counter = iter(range(args.requests))
    statuses: dict[int, int] = {}
    curve: list[dict[str, float]] = []
    started = time.monotonic()
    done = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        for n in counter:
            if time.monotonic() - started > args.max_seconds:
                return
            body, headers = request_for(n)
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            done += 1
            if done % args.every == 0:
                rss, fds = rss_and_fds(pid)
                point = {"requests": done, "seconds": round(time.monotonic() - started, 1),
                         "rss_mb": round(rss, 1), "open_fds": fds}
                curve.append(point)
                print(json.dumps(point), flush=True)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        rss, fds = rss_and_fds(pid)
        curve.append({"requests": 0, "seconds": 0.0, "rss_mb": round(rss, 1), "open_fds": fds})
        await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
    return {"requests": done, "seconds": round(time.monotonic() - started, 1),
            "statuses": statuses, "curve": curve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args(argv)
    upstream_port, proxy_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "VM_PROXY_SERVER__LOG_LEVEL": "warning",
               "VM_PROXY_VM__ACTIVATE_ABOVE": "300", "VM_PROXY_VM__CONTEXT_BUDGET": "2000"}
        upstream = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "stall.py"), "upstream",
             "--port", str(upstream_port)])
        proxy = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--port", str(proxy_port),
             "--upstream", f"http://127.0.0.1:{upstream_port}/v1",
             "--store", f"sqlite:///{folder}/soak.db"], env=env, cwd=ROOT)
        try:
            wait_ready(upstream_port)
            wait_ready(proxy_port)
            report = asyncio.run(drive(proxy_port, proxy.pid, args))
            curve = report["curve"]
            # Warm-up: the first two samples (caches and pools filling).
            warm = next((p for p in curve if p["requests"] >= 2 * args.every), curve[-1])
            report["rss_growth_after_warmup_mb"] = round(curve[-1]["rss_mb"] - warm["rss_mb"], 1)
            report["fds_growth_after_warmup"] = curve[-1]["open_fds"] - warm["open_fds"]
            report["db_mb"] = round(sum(
                f.stat().st_size for f in Path(folder).iterdir()) / 1e6, 1)
            print(json.dumps(report, indent=1))
        finally:
            for process in (proxy, upstream):
                process.terminate()
                process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
