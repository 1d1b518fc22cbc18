"""`python -m benchmarks.recall [--dataset assistant,dialogue,longmemeval] [--budgets ...]`

Datasets:
- assistant (the default): the synthetic assistant chats (`generate.py`); one conversation
  per `--sizes`, run through the proxy (in process) and the baselines at every budget
  (default 2000,4000,8000); writes `recall.json`, `recall.png` and `RESULTS.md`;
- dialogue: long dated chats between two friends (`dialogue/`), `--conversations` of
  `--sessions` sessions with `--questions` questions each;
- longmemeval: the LongMemEval sample in ../shared/data (skipped with a reason if absent).
The chat datasets run the proxy with each `--behaviours` of the scripted model and the
baselines truncation, bm25 and bm25_next at every budget (default 4096), and write
`recall_dialogue.json` and `recall_dialogue.md` (see `chat/run.py`).

`--quick`: a small smoke run that writes nothing unless `--out` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.recall import report
from benchmarks.recall.baselines import History
from benchmarks.recall.chat.run import CHAT_DATASETS
from benchmarks.recall.drive import FEED_WINDOW, ProxyOptions, run_baseline, run_proxy
from benchmarks.recall.generate import generate
from benchmarks.recall.metrics import FeedStats, ProbeRecord, Row, summarize


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.recall", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument(
        "--dataset", default="assistant", help="assistant, dialogue, longmemeval (comma-separated)"
    )
    parser.add_argument(
        "--sizes", type=_ints, default=[1000, 2000], help="conversation lengths in turns"
    )
    parser.add_argument(
        "--budgets",
        type=_ints,
        default=None,
        help="vm.context_budget values (default 2000,4000,8000; chat datasets 4096)",
    )
    parser.add_argument(
        "--behaviours",
        default="question,keywords,none",
        help="scripted model behaviours for the chat datasets",
    )
    parser.add_argument("--conversations", type=int, default=6, help="dialogue conversations")
    parser.add_argument("--sessions", type=int, default=24, help="sessions per dialogue")
    parser.add_argument("--questions", type=int, default=22, help="questions per dialogue")
    parser.add_argument(
        "--append",
        action="store_true",
        help="chat datasets: feed history with X-VM-Session, only new messages",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--probes", type=int, default=30, help="questions per conversation")
    parser.add_argument(
        "--systems",
        default=None,
        help="default proxy,truncation,bm25 (chat datasets also bm25_next)",
    )
    parser.add_argument("--reply-tokens", type=int, default=256, help="max_tokens of every request")
    parser.add_argument(
        "--stream-probes", type=int, default=2, help="probes asked with stream=true"
    )
    parser.add_argument("--mode", default="strict", choices=("strict", "relaxed", "passive"))
    parser.add_argument(
        "--fault-order", default="hints", choices=("hints", "score"),
        help="which search hits the scripted model faults first: the most promising by their "
        "hints (default) or simply the search order",
    )  # fmt: skip
    parser.add_argument(
        "--embeddings", default="off",
        help="chat datasets: the proxy's embeddings.provider, comma-separated, each its own "
        "proxy rows: off (BM25 alone, rows 'proxy') and/or onnx (fused with the local model "
        "in ../shared/models/all-MiniLM-L6-v2-int8, rows 'proxy+onnx'); e.g. off,onnx",
    )  # fmt: skip
    parser.add_argument(
        "--vector-cache", type=Path, default=None, metavar="DIR",
        help="keep the onnx runs' text vectors in DIR between runs (same vectors, less time; "
        "e.g. /tmp/vm-proxy-recall-vectors)",
    )  # fmt: skip
    parser.add_argument(
        "--embedding", action="append", default=[], metavar="NAME=VALUE",
        help="an embeddings.* setting of the onnx rows, e.g. --embedding fusion_k=10 "
        "--embedding fusion_weight=0.8 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--vm", action="append", default=[], metavar="NAME=VALUE",
        help="chat datasets: a vm.* setting of every proxy row, e.g. --vm expected_faults=1 "
        "(repeatable; experiments)",
    )  # fmt: skip
    parser.add_argument(
        "--resend", action="store_true", help="feed history by full resend, not X-VM-Session append"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 400 turns, 4k budget, 12 probes"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"results directory (default {report.RESULTS_DIR})"
    )
    parser.add_argument(
        "--report-only", action="store_true",
        help="redraw the PNG and RESULTS.md from an existing recall.json (e.g. after "
        "editing recall_analysis.md or adding other benchmarks' JSON)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.datasets = [d.strip() for d in args.dataset.split(",") if d.strip()]
    unknown = set(args.datasets) - {"assistant", *CHAT_DATASETS}
    if unknown:
        parser.error(f"unknown dataset {', '.join(sorted(unknown))}")
    args.behaviours = [b.strip() for b in args.behaviours.split(",") if b.strip()]
    args.embeddings = [e.strip() for e in args.embeddings.split(",") if e.strip()]
    if set(args.embeddings) - {"off", "onnx"}:
        parser.error("--embeddings takes off and/or onnx")
    args.tuning = {}
    for item in args.embedding:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            parser.error(f"--embedding takes NAME=VALUE, not {item!r}")
        args.tuning[name.strip()] = value.strip()
    args.vm_tuning = {}
    for item in args.vm:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            parser.error(f"--vm takes NAME=VALUE, not {item!r}")
        args.vm_tuning[name.strip()] = value.strip()
    if args.quick:
        args.sizes, args.probes = [400], 12
        args.conversations, args.sessions, args.questions = 1, 10, 8
    return args


def code_version() -> str:
    """The commit measured, and whether proxy/ had uncommitted changes (a shared checkout)."""
    if os.environ.get("VM_BENCH_CODE"):  # a run from an exported snapshot names its commit
        return os.environ["VM_BENCH_CODE"]
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "proxy")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes in proxy/" if dirty else "")


def rewrite_report(out: Path) -> int:
    payload = json.loads((out / "recall.json").read_text())
    rows = [Row(**row) for row in payload["rows"]]
    report.plot(rows, out / "recall.png")
    (out / "RESULTS.md").write_text(report.results_page(payload, rows, out))
    print(f"rewrote {out / 'recall.png'} and {out / 'RESULTS.md'}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.report_only:
        return rewrite_report(args.out or report.RESULTS_DIR)
    command = ("python -m benchmarks.recall " + shlex.join(argv)).strip()
    status = 0
    if "assistant" in args.datasets:
        status = assistant_main(argv, args)
    if set(args.datasets) & set(CHAT_DATASETS):
        from benchmarks.recall.chat import run

        chat_args = argparse.Namespace(**vars(args))
        chat_args.budgets = args.budgets or ([4000] if args.quick else [4096])
        chat_args.systems = _names(args.systems or "proxy,truncation,bm25,bm25_next")
        out = args.out or (None if args.quick else report.RESULTS_DIR)
        status = run.main(chat_args, command, code_version(), out) or status
    return status


def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def assistant_main(argv: list[str], args: argparse.Namespace) -> int:
    """The synthetic assistant dataset's run (the original benchmark)."""
    args = argparse.Namespace(**vars(args))
    args.budgets = args.budgets or ([4000] if args.quick else [2000, 4000, 8000])
    systems = _names(args.systems or "proxy,truncation,bm25")
    records: list[ProbeRecord] = []
    feeds: list[FeedStats] = []
    notes: list[str] = []
    for size in args.sizes:
        conversation = generate(size, args.seed, args.probes)
        history = History(conversation)
        for budget in args.budgets:
            for system in systems:
                started = time.perf_counter()
                if system == "proxy":
                    options = ProxyOptions(
                        mode=args.mode,
                        reply_tokens=args.reply_tokens,
                        stream_probes=args.stream_probes,
                        append=not args.resend,
                        read_hints=args.fault_order == "hints",
                    )
                    found, feed = asyncio.run(run_proxy(history, budget, options))
                else:
                    found, feed = run_baseline(system, history, budget, args.reply_tokens)
                records += found
                feeds.append(feed)
                print(
                    f"{system:>10} {size:>6} turns {budget:>5} budget: "
                    f"{time.perf_counter() - started:6.1f}s",
                    file=sys.stderr,
                )
    rows = summarize(records, feeds)
    if "proxy" in systems and not any(
        r.max_prompt_tokens < r.full_tokens for r in records if r.system == "proxy"
    ):
        notes.append("The proxy forwarded full prompts: VM paging was not active in this build.")
    if "proxy" in systems and args.stream_probes:
        notes.append(
            f"{args.stream_probes} questions per proxy run were asked with stream=true; the SSE "
            "framing is checked (one role chunk, one finish, [DONE], no VM call leaked) and "
            "any problem is noted per row."
        )
    notes.append(
        f"Prefix share and feed savings: over the last {FEED_WINDOW} history turns; "
        "baselines' history prompts are rebuilt for each of those turns."
    )
    command = "python -m benchmarks.recall " + shlex.join(argv)
    print(report.table(rows))
    print()
    print("\n".join(report.targets(rows)))
    out = args.out or (None if args.quick else report.RESULTS_DIR)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": command.strip(),
            "code": code_version(),
            "seed": args.seed,
            "sizes": args.sizes,
            "budgets": args.budgets,
            "notes": notes,
            "rows": [r.as_dict() for r in rows],
            "feeds": [asdict(f) for f in feeds],
            "probes": [asdict(r) for r in records],
        }
        report.write_json(payload, out / "recall.json")
        report.plot(rows, out / "recall.png")
        (out / "RESULTS.md").write_text(report.results_page(payload, rows, out))
        print(
            f"\nwrote {out / 'recall.json'}, {out / 'recall.png'}, {out / 'RESULTS.md'}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
