"""A memory-active turn while other clients' short chats load the server (issue 15).

`vm-proxy serve` with the defaults (SQLite, `vm.context_budget` 8,000) on loopback, a fake
upstream that answers at once, and one client continuing a 1,000-turn conversation (past
`vm.activate_above`, so every turn of it packs a working set and reads the store) while
the load generator drives `--concurrency` clients of 4-turn short chats. The turns are
timed alone first, then under the load; the load's req/s is reported beside them.

What it guards: the SQLite writer thread gets the GIL only when the event loop gives it
up, so short chats at full speed starve it, and a memory-active turn, whose reads go
behind its own deferred write, waits for the writer's whole backlog (before the backlog
was bounded: 2-10 s; proxy.store.sqlite_calls.MAX_DEFERRED).

    python benchmarks/turn_under_load.py [--concurrency 64] [--duration 12] [--turns 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.overhead import (  # noqa: E402
    SERVERS,
    default_command,
    free_port,
    proxy_env,
    started,
    wait_ready,
)
from benchmarks.vm_turn import conversation  # noqa: E402

HEADERS = {"authorization": "Bearer sk-bench-turns"}


def timed_turns(
    client: httpx.Client, messages: list[dict[str, Any]], turns: int, tag: str,
    pause_s: float, load: subprocess.Popen[bytes] | None = None,
) -> list[float]:
    """Up to `turns` more turns of the conversation, each timed (ms), while `load` runs;
    asserts each was packed."""
    latencies = []
    for i in range(turns):
        if load is not None and load.poll() is not None:
            break  # the load is over: a turn now would be timed alone
        messages.append({"role": "user", "content": f"Q {tag} {i}: and what about taxes?"})
        began = time.perf_counter()
        response = client.post("/v1/chat/completions",
                               json={"model": "gpt-4o", "messages": messages})
        latencies.append((time.perf_counter() - began) * 1000.0)
        response.raise_for_status()
        sent = int(response.headers["x-vm-prompt-tokens"])
        assert sent < int(response.headers["x-vm-prompt-tokens-full"]), "not memory-active"
        messages.append(response.json()["choices"][0]["message"])
        time.sleep(pause_s)
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"p50_ms": round(statistics.median(ordered), 1), "max_ms": round(ordered[-1], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=12.0, help="seconds of load")
    parser.add_argument("--turns", type=int, default=20, help="timed turns each way")
    parser.add_argument("--history", type=int, default=1000, help="turns already in it")
    args = parser.parse_args(argv)
    upstream_port, proxy_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    store = f"sqlite:///{tempfile.mkdtemp(prefix='vm-turn-load-')}/store.db"
    env = {**proxy_env(None), "VM_PROXY_VM__CONTEXT_BUDGET": "8000"}
    with started([*SERVERS, "upstream", "--port", str(upstream_port)]), \
            started(default_command(proxy_port, upstream, store), env):
        wait_ready(upstream_port)
        wait_ready(proxy_port)
        with httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", headers=HEADERS,
                          timeout=120) as client:
            messages = [*conversation(args.history), {"role": "user", "content": "Hello."}]
            first = client.post("/v1/chat/completions",
                                json={"model": "gpt-4o", "messages": messages})
            first.raise_for_status()
            messages.append(first.json()["choices"][0]["message"])
            pause_s = 0.1
            alone = timed_turns(client, messages, args.turns, "alone", pause_s)
            load = subprocess.Popen(
                [*SERVERS, "load", "--port", str(proxy_port), "--chat", "short",
                 "--concurrency", str(args.concurrency), "--duration", str(args.duration),
                 "--warmup", "1"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            time.sleep(1.5)  # past the load's warm-up
            loaded = timed_turns(client, messages, args.turns, "loaded", pause_s, load)
            out, _ = load.communicate(timeout=args.duration + 60)
    rate = out.decode().strip().splitlines()[-1] if out else "{}"
    print(f"memory-active turn, {args.history} turns: alone {summary(alone)}; under"
          f" {args.concurrency} clients' short chats {summary(loaded)} ({len(loaded)} turns"
          " while the load ran)")
    print(f"  every loaded turn (ms): {[round(x) for x in loaded]}")
    print(f"  the load: {rate}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
