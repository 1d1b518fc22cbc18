"""Instructions a short chat's request costs the server, counted by callgrind: the
pass-through (`vm.mode = off`) and the defaults in the same run, and what each part of the
turn costs (benchmarks/_ablations.py).

    python benchmarks/instructions.py [--arms off,on,store] [--requests 100,300] [--json F]

Each arm runs `short_profile.py` (the app in process, its store's threads included) under
`valgrind --tool=callgrind` twice, with two request counts; a request's instructions are
the difference over the difference, so start-up and warm-up cancel. Unlike requests per
second on a small shared machine (benchmarks/overhead.py: +-15% between rounds of one run),
the count is the same from run to run to a fraction of a percent, so a change of a few
percent shows. It does not see what instructions cost: cache misses, the GIL's hand-overs
between the loop and the store's threads, or which core runs what. The in-process client
(httpx) is counted in every arm alike.

Arms: `off`, `on` (defaults, SQLite), `memory` (defaults, `memory://`), and `store`,
`append`, `sql`, `reads`: `on` with that part taken out (see _ablations.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ARMS: dict[str, list[str]] = {
    "off": ["--mode", "off"],
    "on": [],
    "memory": ["--store", "memory://"],
    "store": ["--ablate", "store"],
    "append": ["--ablate", "append"],
    "sql": ["--ablate", "sql"],
    "reads": ["--ablate", "reads"],
    "version": ["--ablate", "version"],
    "again": ["--ablate", "again"],
}


def count(arm: str, requests: int, out_dir: Path, chat: str = "short") -> int:
    """Instructions of one run of short_profile.py (every thread)."""
    out = out_dir / f"callgrind.{arm}.{requests}"
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        sys.executable, str(HERE / "short_profile.py"), "--requests", str(requests),
        "--chat", chat, *ARMS[arm],
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-2000:])
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def measure(arm: str, low: int, high: int, out_dir: Path, chat: str = "short") -> float:
    """A request's instructions: the two runs side by side (two cores, or they wait)."""
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        with ThreadPoolExecutor(2) as pool:
            few, many = pool.map(lambda n: count(arm, n, Path(scratch), chat), (low, high))
    return (many - few) / (high - low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated, of "
                        + ", ".join(ARMS))
    parser.add_argument("--requests", default="100,300", help="the two request counts")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--chat", choices=("short", "same"), default="short",
                        help="short chats, or one body for every request (as wrk sends)")
    args = parser.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arms: {', '.join(unknown)}")
    low, high = (int(n) for n in args.requests.split(","))
    if shutil.which("valgrind") is None:
        print("instructions.py skipped: valgrind is not installed", file=sys.stderr)
        return 0
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vm-instructions-") as out_dir:
        for arm in arms:
            results[arm] = measure(arm, low, high, Path(out_dir), args.chat)
            print(f"  measured {arm:8} {results[arm] / 1e6:7.3f} M instructions a request",
                  file=sys.stderr)
    report: dict[str, Any] = {"requests": [low, high], "chat": args.chat,
                              "instructions": results}
    print(f"{'arm':8} {'M instr/req':>12} {'vs off':>8} {'vs on (M)':>10}")
    for arm, value in results.items():
        vs_off = f"{value / results['off']:.3f}" if "off" in results else "-"
        vs_on = f"{(value - results['on']) / 1e6:+.3f}" if "on" in results else "-"
        print(f"{arm:8} {value / 1e6:12.3f} {vs_off:>8} {vs_on:>10}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
