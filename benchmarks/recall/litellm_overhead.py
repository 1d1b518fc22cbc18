"""LiteLLM's proxy beside vm-proxy, measured the way `benchmarks/overhead.py` measures.

    python -m benchmarks.recall.litellm_overhead [--litellm PATH] [--concurrency 1,8] \
        [--duration 3] [--json benchmarks/results/litellm.json]

Optional: LiteLLM is not a dependency. Install it apart from the project (it is large and
pins its own versions of shared libraries), e.g.
`python -m venv /tmp/litellm && /tmp/litellm/bin/pip install 'litellm[proxy]'`, then pass
`--litellm /tmp/litellm/bin/litellm` (or set LITELLM_BIN, or put `litellm` on PATH). Without
it the JSON says the leg was skipped and why, and the results page shows that note.

In one run, on loopback, each in its own process: the overhead benchmark's fake upstream,
its bare aiohttp passthrough (the baseline), `vm-proxy serve` with `vm.mode=off`, and
`litellm --config` routing one model to the fake upstream, offline
(`LITELLM_LOCAL_MODEL_COST_MAP=True`, `LITELLM_TELEMETRY_DISABLED=true`). The overhead
benchmark's load generator drives each in turn. Noisy on a shared 2-core machine: compare
ratios within the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks import overhead

MASTER_KEY = "sk-bench"  # what the overhead load generator sends as its bearer key
CONFIG = """model_list:
  - model_name: fake-model
    litellm_params:
      model: openai/fake-model
      api_base: {upstream}/v1
      api_key: sk-fake
litellm_settings:
  telemetry: false
"""
TARGETS = ("upstream-direct", overhead.BASELINE, "vm-proxy", "litellm")


def find_litellm(given: str | None) -> str | None:
    for candidate in (given, os.environ.get("LITELLM_BIN"), shutil.which("litellm")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def litellm_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VM_PROXY_", "OPENAI_"))}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_TELEMETRY_DISABLED="true",
        LITELLM_MASTER_KEY=MASTER_KEY,
        LITELLM_LOG="ERROR",
    )
    return env


def measure(litellm: str, levels: list[int], duration_s: float, warmup_s: float) -> dict[str, Any]:
    ports = {name: overhead.free_port() for name in TARGETS}
    upstream = f"http://127.0.0.1:{ports['upstream-direct']}"
    servers, base = overhead.SERVERS, overhead.BASELINE
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "litellm.yaml"
        config.write_text(CONFIG.format(upstream=upstream))
        commands = {
            "upstream-direct": ([*servers, "upstream", "--port", str(ports[TARGETS[0]])], None),
            base: ([*servers, "aiohttp", "--port", str(ports[base]), "--upstream", upstream], None),
            "vm-proxy": ([sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1",
                          "--port", str(ports["vm-proxy"]), "--upstream", f"{upstream}/v1",
                          "--store", "memory://"], overhead.proxy_env()),
            "litellm": ([litellm, "--config", str(config), "--host", "127.0.0.1",
                         "--port", str(ports["litellm"])], litellm_env()),
        }  # fmt: skip
        results = []
        with ExitStack() as stack:
            pids = {name: stack.enter_context(overhead.started(*commands[name])).pid
                    for name in TARGETS}  # fmt: skip
            for name in TARGETS:
                overhead.wait_ready(ports[name], timeout_s=180.0 if name == "litellm" else 30.0)
            for level in levels:
                for name in TARGETS:
                    cpu_before = overhead.cpu_seconds(pids[name])
                    result = overhead.run_load(
                        ports[name],
                        concurrency=level,
                        duration_s=duration_s,
                        warmup_s=warmup_s,
                        max_requests=100_000,
                    )
                    result["target"] = name
                    cpu_after = overhead.cpu_seconds(pids[name])
                    served = result.get("all_requests") or result["requests"]
                    if cpu_before is not None and cpu_after is not None and served:
                        # the server's own CPU per request, as overhead.py reports it
                        result["cpu_us_per_request"] = round(
                            (cpu_after - cpu_before) / served * 1e6, 1
                        )
                    results.append(result)
                    print(
                        f"  measured {name:<16} c={level:<3} {result['rps']:>9.1f} req/s",
                        file=sys.stderr,
                    )
    return _summary(results, levels)


def _summary(results: list[dict[str, Any]], levels: list[int]) -> dict[str, Any]:
    by_key = {(r["target"], r["concurrency"]): r for r in results}
    rows = []
    for level in levels:
        direct, base = by_key[("upstream-direct", level)], by_key[(overhead.BASELINE, level)]
        for name in TARGETS:
            row = dict(by_key[(name, level)])
            if name != "upstream-direct":
                row["added_p50_ms"] = round(row["p50_ms"] - direct["p50_ms"], 3)
                row["rps_vs_baseline"] = round(row["rps"] / base["rps"], 3) if base["rps"] else None
            rows.append(row)
    ratios = {
        str(level): round(by_key[("vm-proxy", level)]["rps"] / by_key[("litellm", level)]["rps"], 2)
        for level in levels
        if by_key[("litellm", level)]["rps"]
    }
    return {"rows": rows, "vm_proxy_rps_over_litellm": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--litellm", help="path of the `litellm` executable")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    litellm = find_litellm(args.litellm)
    payload: dict[str, Any] = {"benchmark": "litellm", "machine": {"cpus": os.cpu_count()}}
    if litellm is None:
        payload["skipped"] = (
            "LiteLLM is not installed: pip install 'litellm[proxy]' in a separate "
            "venv and pass --litellm PATH (see benchmarks/recall/litellm_overhead.py)"
        )
        print(payload["skipped"], file=sys.stderr)
    else:
        payload.update(measure(litellm, levels, args.duration, args.warmup))
        payload["command"] = "python -m benchmarks.recall.litellm_overhead " + " ".join(
            argv or sys.argv[1:]
        )
        payload["note"] = (
            "vm-proxy with vm.mode=off and LiteLLM's proxy on the same fake upstream; "
            "noisy 2-core machine, compare ratios within this run"
        )
        for row in payload["rows"]:
            print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
