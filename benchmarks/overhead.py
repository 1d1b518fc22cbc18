"""What the proxy costs on the pass-through path, against bare passthroughs in the same run.

    python benchmarks/overhead.py [--concurrency 1,8,64] [--duration 3] [--json out.json]
    python benchmarks/overhead.py --targets upstream-direct,bare-aiohttp,vm-proxy,vm-default \
        --concurrency 1,64 --rounds 3     # memory on, alternating with the baseline

Starts on loopback, each in its own process: a fake upstream (one small chat completion
per request), a bare aiohttp passthrough (aiohttp server and client: the baseline), a bare
starlette passthrough with an aiohttp client (the issue's reference stack), a bare
starlette passthrough with httpx's default pool (for reference), and `vm-proxy serve`
with `vm.mode=off` (validation, logging, metrics, pass-through). A load generator in
another process drives each for a few seconds at each concurrency and reports req/s and
latency; "added" latency is measured against hitting the fake upstream directly.

Two more targets measure what a new user runs (issue 15): `vm-default` is `vm-proxy serve`
with the default settings (memory on, a SQLite store in a fresh temporary file) and
`vm-default-memory` the same on the `memory://` store; `vm-default-embeddings` is
`vm-default` with `embeddings.provider = onnx` (the model in ../shared/models, skipped with
a reason when absent); `vm-default-unstored` is `vm-default` with the short chat's store
a no-op (benchmarks/_unstored.py, an experiment: what storing costs);
`vm-default-postgres` is `vm-default` on PostgreSQL (`--postgres URL` or
VM_TEST_POSTGRES_URL, in a schema of its own, dropped after the run). Every target is
driven with short
chats by default (`--chat short`: each request a new turn of a 4-turn chat, resending its
history; far below `vm.activate_above`, so each is forwarded unchanged and its new user
message and answer are stored), so every row carries the same requests; `--chat oneshot`
sends each request as a new chat of one message instead (each a new conversation's first
turn, which looks up its history and creates its conversation). After the run the
SQLite target's file is measured: bytes on disk per stored message, by table
(benchmarks/storage.py).

The figures are noisy on a small shared machine: every process competes for the same
cores, so compare ratios within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks import storage  # noqa: E402

SERVERS = [sys.executable, str(HERE / "_servers.py")]
BASELINE = "bare-aiohttp"
TARGETS = ["upstream-direct", BASELINE, "starlette+aiohttp", "starlette+httpx", "vm-proxy"]
# Memory on, the defaults (issue 15); not measured unless named in --targets.
# `vm-default-embeddings`: the same with embeddings on (the local ONNX model in ../shared,
# issue 14); `vm-default` itself has them off (`auto` is off for a non-OpenAI upstream).
# `vm-default-unstored`: an experiment, `vm-default` with the short chat's store a no-op
# (benchmarks/_unstored.py): what storing the turns costs, in the same run.
# `vm-default-postgres`: the defaults on PostgreSQL (`--postgres URL`, else
# VM_TEST_POSTGRES_URL; skipped with a reason when neither is set), in a schema of its own
# dropped after the run.
DEFAULT_TARGETS = ["vm-default", "vm-default-memory", "vm-default-embeddings",
                   "vm-default-unstored", "vm-default-postgres"]
MODEL_DIR = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-int8"


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg  # a dependency of the proxy's PostgreSQL store

    from proxy.store.postgres import parse_postgres_url

    connection = await asyncpg.connect(parse_postgres_url(url)[0])
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


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
    port: int, *, concurrency: int, duration_s: float, warmup_s: float, max_requests: int,
    chat: str = "same",
) -> dict[str, Any]:
    command = [
        *SERVERS, "load", "--port", str(port), "--concurrency", str(concurrency),
        "--duration", str(duration_s), "--warmup", str(warmup_s),
        "--max-requests", str(max_requests), "--chat", chat,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=duration_s + warmup_s + 60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-2000:])
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def proxy_env(mode: str | None = "off") -> dict[str, str]:
    """A proxy's environment: `mode` off is the pure pass-through path; None, the default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VM_PROXY_")}
    env["PYTHONPATH"] = str(REPO)
    if mode is not None:
        env["VM_PROXY_VM__MODE"] = mode
    return env


def default_command(port: int, upstream_url: str, store: str) -> list[str]:
    return [sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--upstream", f"{upstream_url}/v1", "--store", store]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated levels")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    parser.add_argument("--max-requests", type=int, default=100_000, help="cap per measurement")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--targets", default=",".join(TARGETS), help=(
        f"comma-separated, in the order measured, of {', '.join([*TARGETS, *DEFAULT_TARGETS])}"))
    parser.add_argument("--chat", choices=["short", "oneshot", "same"], default="short",
                        help="every request a new turn of a short chat, a new one-message "
                        "chat, or the same one message")
    parser.add_argument("--postgres", default=os.environ.get("VM_TEST_POSTGRES_URL", ""),
                        help="PostgreSQL URL for vm-default-postgres")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every target this many times per level, alternating")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    targets = args.targets.split(",")
    data = Path(tempfile.mkdtemp(prefix="vm-overhead-"))
    sqlite_file = data / "vm-default.db"

    ports = {name: free_port() for name in [*TARGETS, *DEFAULT_TARGETS]}
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
        "vm-default": (
            default_command(ports["vm-default"], upstream_url, f"sqlite:///{sqlite_file}"),
            proxy_env(None),
        ),
        "vm-default-memory": (
            default_command(ports["vm-default-memory"], upstream_url, "memory://"),
            proxy_env(None),
        ),
        "vm-default-unstored": (
            [sys.executable, str(HERE / "_unstored.py"),
             *default_command(ports["vm-default-unstored"], upstream_url,
                              f"sqlite:///{data / 'vm-default-unstored.db'}")[3:]],
            proxy_env(None),
        ),
        "vm-default-embeddings": (
            default_command(ports["vm-default-embeddings"], upstream_url,
                            f"sqlite:///{data / 'vm-default-embeddings.db'}"),
            {**proxy_env(None), "VM_PROXY_EMBEDDINGS__PROVIDER": "onnx",
             "VM_PROXY_EMBEDDINGS__PATH": str(MODEL_DIR)},
        ),
    }  # fmt: skip
    schema = f"vm_overhead_{uuid.uuid4().hex[:10]}"
    if args.postgres:
        sep = "&" if "?" in args.postgres else "?"
        commands["vm-default-postgres"] = (
            default_command(ports["vm-default-postgres"], upstream_url,
                            f"{args.postgres}{sep}schema={schema}"),
            proxy_env(None),
        )
    elif "vm-default-postgres" in targets:
        print("vm-default-postgres skipped: no --postgres URL nor VM_TEST_POSTGRES_URL",
              file=sys.stderr)
        targets.remove("vm-default-postgres")
    if "vm-default-embeddings" in targets and not (MODEL_DIR / "model.onnx").is_file():
        print(f"vm-default-embeddings skipped: no model at {MODEL_DIR}", file=sys.stderr)
        targets.remove("vm-default-embeddings")
    # The fake upstream runs whether it is measured or not: the others forward to it.
    running = list(dict.fromkeys(["upstream-direct", *targets]))

    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        pids = {}
        for name in running:
            command, env = commands[name]
            pids[name] = stack.enter_context(started(command, env)).pid
        for name in running:
            wait_ready(ports[name])
        for level in levels:
            for round_number in range(args.rounds):
                for name in targets:
                    cpu_before = cpu_seconds(pids[name])
                    result = run_load(
                        ports[name],
                        concurrency=level,
                        duration_s=args.duration,
                        warmup_s=args.warmup,
                        max_requests=args.max_requests,
                        chat=args.chat,
                    )
                    cpu_after = cpu_seconds(pids[name])
                    result["target"] = name
                    result["round"] = round_number
                    # CPU per request of the server under test (not of the upstream behind
                    # it): steadier than req/s on a shared machine, where req/s also
                    # measures the neighbours.
                    if (cpu_before is not None and cpu_after is not None
                            and result["all_requests"]):
                        result["cpu_us_per_request"] = round(
                            (cpu_after - cpu_before) / result["all_requests"] * 1e6, 1
                        )
                    results.append(result)
                    print(
                        f"  measured {name:<18} c={level:<3} {result['rps']:>9.1f} req/s",
                        file=sys.stderr,
                    )
    # Measured once the server has stopped (its last writes and checkpoint done).
    disk = storage.breakdown(sqlite_file) if "vm-default" in targets else None
    shutil.rmtree(data, ignore_errors=True)
    if "vm-default-postgres" in targets:
        asyncio.run(_drop_schema(args.postgres, schema))

    report = summarise(results, levels, targets)
    if disk is not None:
        report["disk"] = disk
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
                "vm-proxy with vm.mode=off; vm-default(-memory): the default settings (memory "
                "on) on a SQLite (memory://) store; baseline: bare aiohttp server + aiohttp "
                "client; "
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


def summarise(
    results: list[dict[str, Any]], levels: list[int], targets: list[str]
) -> dict[str, Any]:
    """Every row against the same round's upstream-direct and baseline; each ratio the
    median over the rounds."""
    by_key = {(r["target"], r["concurrency"], r["round"]): r for r in results}
    rows = []
    ratios: dict[str, dict[str, float | None]] = {}
    for level in levels:
        found: dict[str, list[float | None]] = {}
        for r in (r for r in results if r["concurrency"] == level):
            row = dict(r)
            direct = by_key.get(("upstream-direct", level, r["round"]))
            base = by_key.get((BASELINE, level, r["round"]))
            if r["target"] != "upstream-direct" and direct is not None:
                row["added_p50_ms"] = round(r["p50_ms"] - direct["p50_ms"], 3)
                row["added_p99_ms"] = round(r["p99_ms"] - direct["p99_ms"], 3)
            if r["target"] != "upstream-direct" and base is not None:
                row["rps_vs_baseline"] = _ratio(r["rps"], base["rps"])
            rows.append(row)
            name = r["target"].replace("-", "_").replace("+", "_")
            if r["target"] in ("vm-proxy", *DEFAULT_TARGETS) and base is not None:
                found.setdefault(f"{name}_vs_bare_aiohttp", []).append(
                    _ratio(r["rps"], base["rps"]))
                # Requests per CPU-second over the baseline's: the throughput ratio the
                # proxy would reach with a core of its own.
                found.setdefault(f"{name}_vs_bare_aiohttp_per_cpu", []).append(_ratio(
                    base.get("cpu_us_per_request"), r.get("cpu_us_per_request")))
            reference = by_key.get(("starlette+aiohttp", level, r["round"]))
            if r["target"] == "vm-proxy" and reference is not None:
                found.setdefault("vm_proxy_vs_starlette_aiohttp", []).append(
                    _ratio(r["rps"], reference["rps"]))
            off = by_key.get(("vm-proxy", level, r["round"]))
            if r["target"] in DEFAULT_TARGETS and off is not None:
                # What memory on costs over the same proxy with vm.mode = off.
                found.setdefault(f"{name}_added_p50_ms_over_off", []).append(
                    round(r["p50_ms"] - off["p50_ms"], 3))
        ratios[str(level)] = {key: _median(values) for key, values in found.items()}
    return {"rows": rows, "ratios": ratios}


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


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
        for key, value in report["ratios"][str(level)].items():
            print(f"c={level}: {key} = {_cell(value, '.3f')}")
    disk = report.get("disk")
    if disk:
        print()
        print(storage.describe(disk))


if __name__ == "__main__":
    raise SystemExit(main())
