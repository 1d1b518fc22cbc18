"""The chat datasets' run: `python -m benchmarks.recall --dataset dialogue,longmemeval
[--behaviours question,keywords,none] [--budgets 4096]` (see `__main__.py`).

One run measures every dataset x system x behaviour x budget, prints the tables and writes
`recall_dialogue.json` and `recall_dialogue.md` (the section RESULTS.md takes in) to the
results directory, unless `--quick`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.recall.chat import longmemeval, summary
from benchmarks.recall.chat.drive import (
    FeedRecord,
    Options,
    QuestionRecord,
    run_baseline,
    run_proxy,
)
from benchmarks.recall.chat.packing import BASELINES, Corpus
from benchmarks.recall.chat.types import Chat
from benchmarks.recall.counting import count_prompt
from benchmarks.recall.dialogue.generate import generate_dialogues

CHAT_DATASETS = ("dialogue", "longmemeval")
# The bar for the dialogue set: BM25 over turns must not come near 100%.
BM25_CEILING = 0.85


def load(args: argparse.Namespace, notes: list[str]) -> list[Chat]:
    chats: list[Chat] = []
    if "dialogue" in args.datasets:
        chats += generate_dialogues(args.seed, args.conversations, args.sessions, args.questions)
    if "longmemeval" in args.datasets:
        missing = longmemeval.available()
        if missing:
            notes.append(f"longmemeval skipped: {missing}")
            print(f"longmemeval skipped: {missing}", file=sys.stderr)
        else:
            found = longmemeval.load()
            chats += found[:1] if args.quick else found
    for chat in chats:
        notes += [f"{chat.name}: left out: {reason}" for reason in chat.excluded]
    return chats


def describe(chats: list[Chat]) -> list[str]:
    lines = []
    for dataset in dict.fromkeys(c.dataset for c in chats):
        mine = [c for c in chats if c.dataset == dataset]
        messages = sum(len(c.messages) for c in mine) / len(mine)
        tokens = sum(count_prompt(c.messages) for c in mine) / len(mine)
        questions = sum(len(c.questions) for c in mine)
        lines.append(f"{dataset}: {len(mine)} conversations of {messages:.0f} messages and "
                     f"{tokens:,.0f} tokens on average, {questions} questions")  # fmt: skip
    return lines


def measure(chats: list[Chat], args: argparse.Namespace) -> tuple[list[QuestionRecord],
                                                                  list[FeedRecord]]:  # fmt: skip
    options = Options(reply_tokens=args.reply_tokens, mode=args.mode, append=args.append,
                      tuning=args.tuning, vector_cache=args.vector_cache,
                      vm_tuning=args.vm_tuning)  # fmt: skip
    variants = [replace(options, embeddings=e) for e in args.embeddings]
    records: list[QuestionRecord] = []
    feeds: list[FeedRecord] = []
    for chat in chats:
        corpus = Corpus(chat.messages)
        for budget in args.budgets:
            for system in args.systems:
                started = time.perf_counter()
                runs: list[tuple[list[QuestionRecord], FeedRecord]] = []
                if system == "proxy":
                    for variant in variants:
                        for behaviour in args.behaviours:
                            runs.append(asyncio.run(run_proxy(chat, corpus, budget, behaviour,
                                                              variant)))  # fmt: skip
                elif system in BASELINES:
                    runs.append(run_baseline(system, chat, corpus, budget, options))
                for found, feed in runs:
                    records += found
                    feeds.append(feed)
                print(f"{chat.name:>24} {system:>10} {budget:>6}: "
                      f"{time.perf_counter() - started:6.1f}s", file=sys.stderr)  # fmt: skip
    return records, feeds


def discrimination(rows: list[summary.ChatRow]) -> list[str]:
    """Whether the dialogue set tells retrieval apart, and where the proxy stands."""
    lines = []
    for budget in sorted({r.budget for r in rows if r.dataset == "dialogue"}):
        found = {(r.system, r.behaviour): r for r in rows
                 if r.dataset == "dialogue" and r.budget == budget}  # fmt: skip
        bm25, after = found.get(("bm25", "-")), found.get(("bm25_next", "-"))
        truncation = found.get(("truncation", "-"))
        if bm25 is None:
            continue
        verdict = "met" if bm25.recall <= BM25_CEILING else "NOT met: the set is too easy"
        lines.append(f"dialogue at {budget}: bm25 {bm25.recall:.1%} (<= {BM25_CEILING:.0%}: "
                     f"{verdict})")  # fmt: skip
        if after is not None:
            lines.append(
                f"dialogue at {budget}: bm25_next {after.recall:.1%} "
                f"({'above' if after.recall > bm25.recall else 'NOT above'} bm25)"
            )
        if truncation is not None:
            lines.append(f"dialogue at {budget}: truncation {truncation.recall:.1%}")
        for (system, behaviour), row in sorted(found.items()):
            if system.startswith("proxy"):
                lines.append(
                    f"dialogue at {budget}: {system} ({behaviour}) {row.recall:.1%}, "
                    f"{100 * (row.recall - bm25.recall):+.1f} points against bm25"
                )
    return lines + fusion_gains(rows)


def fusion_gains(rows: list[summary.ChatRow]) -> list[str]:
    """Each embeddings variant of the proxy against the proxy with BM25 alone, same run."""
    lines = []
    plain = {(r.dataset, r.budget, r.behaviour): r for r in rows if r.system == "proxy"}
    for row in rows:
        base = plain.get((row.dataset, row.budget, row.behaviour))
        if not row.system.startswith("proxy+") or base is None:
            continue
        hop, base_hop = row.by_kind.get("multi_hop"), base.by_kind.get("multi_hop")
        hops = (f", multi-hop {hop:.1%} vs {base_hop:.1%} ({100 * (hop - base_hop):+.1f})"
                if hop is not None and base_hop is not None else "")  # fmt: skip
        lines.append(
            f"{row.dataset} at {row.budget}: {row.system} ({row.behaviour}) {row.recall:.1%} "
            f"vs proxy {base.recall:.1%}: {100 * (row.recall - base.recall):+.1f} points{hops}"
        )
    return lines


def over_budget(feeds: list[FeedRecord]) -> list[str]:
    """History requests over the budget: passed-through ones counted, paged ones listed."""
    lines = []
    for dataset in dict.fromkeys(f.dataset for f in feeds if f.system == "proxy"):
        mine = [f for f in feeds if f.dataset == dataset and f.system == "proxy"]
        # every behaviour feeds the same history to a fresh proxy: count one behaviour's
        first = mine[0].behaviour
        notes = [n for f in mine if f.behaviour == first for n in f.notes]
        passed = [n for n in notes if "(passed through)" in n]
        if passed:
            lines.append(f"{dataset}: {len(passed)} history requests passed through with "
                         "prompt + max_tokens over the budget (the prompt itself under "
                         "vm.activate_above), the same with every behaviour")  # fmt: skip
        lines += [f"{dataset}: {n}" for n in notes if "(paged)" in n]
    return lines


def main(args: argparse.Namespace, command: str, code: str, out: Path | None) -> int:
    started = time.perf_counter()
    notes: list[str] = []
    chats = load(args, notes)
    if not chats:
        print("no chat dataset to run", file=sys.stderr)
        return 1
    notes = describe(chats) + notes
    records, feeds = measure(chats, args)
    rows = summary.summarize(records, feeds, args.reply_tokens)
    checks = discrimination(rows) + over_budget(feeds)
    seconds = time.perf_counter() - started
    payload: dict[str, Any] = {
        "command": command, "code": code, "seconds": round(seconds, 1), "seed": args.seed,
        "budgets": args.budgets, "behaviours": args.behaviours,
        "reply_tokens": args.reply_tokens, "embedding_settings": args.tuning,
        "vm_settings": args.vm_tuning,
        "notes": [*notes, *checks],
        "rows": [r.as_dict() for r in rows], "feeds": [asdict(f) for f in feeds],
        "questions": [asdict(r) for r in records],
    }  # fmt: skip
    print(summary.section(payload, rows))
    print(f"run time {seconds:.0f} s", file=sys.stderr)
    if out is not None:
        from benchmarks.recall import report

        out.mkdir(parents=True, exist_ok=True)
        report.write_json(payload, out / "recall_dialogue.json")
        (out / "recall_dialogue.md").write_text(summary.section(payload, rows))
        report.refresh_results_page(out)
        print(f"wrote {out / 'recall_dialogue.json'} and {out / 'recall_dialogue.md'}",
              file=sys.stderr)  # fmt: skip
    return 0
