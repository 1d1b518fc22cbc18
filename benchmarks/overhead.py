"""What the proxy costs on the pass-through path, against bare passthroughs in the same run.

    python benchmarks/overhead.py [--concurrency 1,8,64] [--duration 3] [--json out.json]

Starts on loopback, each in its own process: a fake upstream (one small chat completion
per request), a bare aiohttp passthrough (aiohttp server and client: the baseline), a bare
starlette passthrough with an aiohttp client (the issue's reference stack), a bare
starlette passthrough with httpx's default pool (for reference), and `vm-proxy serve`
with `vm.mode=off` (validation, logging, metrics, pass-through). A load generator in
another process drives each for a few seconds at each concurrency and reports req/s and
latency; "added" latency is measured against hitting the fake upstream directly.

The figures are noisy on a small shared machine: every process competes for the same
cores, so compare ratios within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SERVERS = [sys.executable, str(HERE / "_servers.py")]
BASELINE = "bare-aiohttp"
TARGETS = ["upstream-direct", BASELINE, "starlette+aiohttp", "starlette+httpx", "vm-proxy"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def started(
    command: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_load(
    port: int, *, concurrency: int, duration_s: float, warmup_s: float, max_requests: int
) -> dict[str, Any]:
    command = [
        *SERVERS, "load", "--port", str(port), "--concurrency", str(concurrency),
        "--duration", str(duration_s), "--warmup", str(warmup_s),
        "--max-requests", str(max_requests),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=duration_s + warmup_s + 60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-2000:])
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def proxy_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VM_PROXY_")}
    env["PYTHONPATH"] = str(REPO)
    env["VM_PROXY_VM__MODE"] = "off"  # the pure pass-through path
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated levels")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    parser.add_argument("--max-requests", type=int, default=100_000, help="cap per measurement")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]

    ports = {name: free_port() for name in TARGETS}
    upstream_url = f"http://127.0.0.1:{ports['upstream-direct']}"
    commands = {
        "upstream-direct": ([*SERVERS, "upstream", "--port", str(ports["upstream-direct"])], None),
        BASELINE: (
            [*SERVERS, "aiohttp", "--port", str(ports[BASELINE]), "--upstream", upstream_url],
            None,
        ),
        "starlette+aiohttp": (
            [*SERVERS, "starlette-aiohttp", "--port", str(ports["starlette+aiohttp"]),
             "--upstream", upstream_url],
            None,
        ),
        "starlette+httpx": (
            [*SERVERS, "starlette-httpx", "--port", str(ports["starlette+httpx"]),
             "--upstream", upstream_url],
            None,
        ),
        "vm-proxy": (
            [sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1",
             "--port", str(ports["vm-proxy"]), "--upstream", f"{upstream_url}/v1",
             "--store", "memory://"],
            proxy_env(),
        ),
    }  # fmt: skip

    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        pids = {}
        for name in TARGETS:
            command, env = commands[name]
            pids[name] = stack.enter_context(started(command, env)).pid
        for name in TARGETS:
            wait_ready(ports[name])
        for level in levels:
            for name in TARGETS:
                cpu_before = cpu_seconds(pids[name])
                result = run_load(
                    ports[name],
                    concurrency=level,
                    duration_s=args.duration,
                    warmup_s=args.warmup,
                    max_requests=args.max_requests,
                )
                cpu_after = cpu_seconds(pids[name])
                result["target"] = name
                # CPU per request of the server under test (not of the upstream behind it):
                # steadier than req/s on a shared machine, where req/s also measures the
                # neighbours.
                if cpu_before is not None and cpu_after is not None and result["all_requests"]:
                    result["cpu_us_per_request"] = round(
                        (cpu_after - cpu_before) / result["all_requests"] * 1e6, 1
                    )
                results.append(result)
                print(
                    f"  measured {name:<18} c={level:<3} {result['rps']:>9.1f} req/s",
                    file=sys.stderr,
                )

    report = summarise(results, levels)
    print_report(report, levels)
    if args.json:
        payload = {
            "benchmark": "overhead",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "levels": levels},
            **report,
            "command": "python benchmarks/overhead.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "note": (
                "vm-proxy with vm.mode=off; baseline: bare aiohttp server + aiohttp client; "
                "cpu_us_per_request is the server's own CPU (user+sys) per request. Noisy "
                "2-core machine shared with other work: compare ratios within one run."
            ),
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def wait_ready(port: int, timeout_s: float = 30.0) -> None:
    """Until a chat completion through `port` answers 200."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        try:
            result = run_load(port, concurrency=1, duration_s=0.05, warmup_s=0.0, max_requests=5)
            if result["requests"]:
                return
            last_error = f"{result['errors']} non-200 answers"
        except (RuntimeError, json.JSONDecodeError) as exc:
            last_error = str(exc)[-300:]
        time.sleep(0.2)
    raise RuntimeError(f"nothing ready on port {port}: {last_error}")


def summarise(results: list[dict[str, Any]], levels: list[int]) -> dict[str, Any]:
    by_key = {(r["target"], r["concurrency"]): r for r in results}
    rows = []
    ratios = {}
    for level in levels:
        direct = by_key[("upstream-direct", level)]
        base = by_key[(BASELINE, level)]
        for name in TARGETS:
            r = by_key[(name, level)]
            row = dict(r)
            if name != "upstream-direct":
                row["added_p50_ms"] = round(r["p50_ms"] - direct["p50_ms"], 3)
                row["added_p99_ms"] = round(r["p99_ms"] - direct["p99_ms"], 3)
                row["rps_vs_baseline"] = _ratio(r["rps"], base["rps"])
            rows.append(row)
        vm = by_key[("vm-proxy", level)]
        ratios[str(level)] = {
            "vm_proxy_vs_bare_aiohttp": _ratio(vm["rps"], base["rps"]),
            "vm_proxy_vs_starlette_aiohttp": _ratio(
                vm["rps"], by_key[("starlette+aiohttp", level)]["rps"]
            ),
            # Requests per CPU-second, vm-proxy over the baseline: the throughput ratio the
            # proxy would reach with a core of its own.
            "vm_proxy_vs_bare_aiohttp_per_cpu": _ratio(
                base.get("cpu_us_per_request"), vm.get("cpu_us_per_request")
            ),
        }
    return {"rows": rows, "ratios": ratios}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def _cell(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def print_report(report: dict[str, Any], levels: list[int]) -> None:
    header = (
        f"{'target':<18} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'+p50 ms':>8} {'+p99 ms':>8} {'vs base':>8} {'cpu us/req':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in report["rows"]:
        print(
            f"{row['target']:<18} {row['concurrency']:>4} {row['rps']:>9.1f} "
            f"{row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} "
            f"{_cell(row.get('added_p50_ms'), '.3f'):>8} "
            f"{_cell(row.get('added_p99_ms'), '.3f'):>8} "
            f"{_cell(row.get('rps_vs_baseline'), '.2f'):>8} "
            f"{_cell(row.get('cpu_us_per_request'), '.0f'):>10}"
        )
    print()
    for level in levels:
        r = report["ratios"][str(level)]
        print(
            f"c={level}: vm-proxy / bare aiohttp = {_cell(r['vm_proxy_vs_bare_aiohttp'], '.2f')} "
            f"(req/s), {_cell(r['vm_proxy_vs_bare_aiohttp_per_cpu'], '.2f')} (req per CPU-s); "
            f"vm-proxy / starlette+aiohttp = {_cell(r['vm_proxy_vs_starlette_aiohttp'], '.2f')}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
