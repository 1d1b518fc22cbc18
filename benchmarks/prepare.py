"""Time to prepare one upstream request when one new message arrives, by conversation length.

For conversations of 100, 1,000 and 10,000 turns (built once, untimed, through the real
ingest and segment-summary code), each measured step takes one new user message through
what the fault loop does before calling upstream, all in-process and pure:
ingest of the new message (+ a segment summary when one is due), BM25 search for it over the
conversation's pages, prefetch, working-set selection, pinning, manifest and packing.
The baseline, measured in the same run, is tokenizing the full history once with the same
tiktoken encoding, which is what a proxy without page caches pays per request at least.
The chain hash of a full resend (what identifies the conversation) is reported apart.

    python benchmarks/prepare.py [--turns 100,1000,10000] [--steps 30] [--budget 8000]
                                 [--json benchmarks/results/prepare.json]

Figures are wall-clock on a shared machine: treat them as noisy, compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter as TermCounter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.config import VMSettings  # noqa: E402
from proxy.loop.prepare import pack_options  # noqa: E402
from proxy.store.codec import page_search_tokens  # noqa: E402
from proxy.tokens import TokenCounter, counter_for_model  # noqa: E402
from proxy.vm.bm25 import BM25Index, search_tokens  # noqa: E402
from proxy.vm.identity import chain_hashes  # noqa: E402
from proxy.vm.ingest import Counters, ingest_messages  # noqa: E402
from proxy.vm.packer import pack_request  # noqa: E402
from proxy.vm.page_table import PageTable  # noqa: E402
from proxy.vm.pages import Page  # noqa: E402
from proxy.vm.prefetch import (  # noqa: E402
    around_ids,
    gather_candidates,
    plan_prefetch,
    search_limit,
    widen_recent,
)
from proxy.vm.segments import build_summary, record_summary  # noqa: E402

MODEL = "gpt-4o"
STAGES = ("ingest", "search", "gather", "pack")


class Words:
    """A deterministic stream of words from a Zipf-like vocabulary with topical drift."""

    def __init__(self, size: int = 6000) -> None:
        syllables = [
            "ka",
            "lo",
            "mi",
            "ren",
            "sto",
            "va",
            "qui",
            "der",
            "mon",
            "tas",
            "pel",
            "gor",
            "bri",
            "sen",
            "lu",
            "tor",
            "fa",
            "nix",
        ]
        self.vocab = [
            syllables[i % 18]
            + syllables[(i // 18) % 18]
            + (syllables[i // 324 % 18] if i > 400 else "")
            for i in range(size)
        ]
        self.common = "the a of to and is in that it for we was on with as be this you".split()
        self.state = 12345

    def _next(self) -> int:
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return self.state

    def sentence(self, topic: int, words: int) -> str:
        out = []
        for _ in range(words):
            r = self._next()
            if r % 3 == 0:
                out.append(self.common[r % len(self.common)])
            elif r % 3 == 1:
                out.append(self.vocab[(topic * 37 + r % 60) % len(self.vocab)])
            else:
                rank = int(len(self.vocab) ** ((r % 1000) / 1000.0))
                out.append(self.vocab[rank % len(self.vocab)])
        text = " ".join(out)
        return text[0].upper() + text[1:] + "."


def conversation(turns: int, words: Words) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant for a product team."}
    ]
    for turn in range(turns):
        topic = turn // 12
        user = " ".join(words.sentence(topic, 12) for _ in range(3))
        if turn % 17 == 5:
            user = f"Remember that the {words.vocab[turn % 900]} code is {turn * 7}. " + user
        messages.append({"role": "user", "content": user})
        if turn % 10 == 7:
            call_id = f"call_{turn}"
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {
                                "name": "lookup",
                                "arguments": json.dumps({"q": words.vocab[turn % 6000]}),
                            },
                        }
                    ],
                }
            )
            rows = [
                {"id": i, "name": words.vocab[(turn + i) % 6000], "note": words.sentence(topic, 8)}
                for i in range(12)
            ]
            messages.append({"role": "tool", "tool_call_id": call_id, "content": json.dumps(rows)})
        messages.append(
            {"role": "assistant", "content": " ".join(words.sentence(topic, 16) for _ in range(6))}
        )
    return messages


class Conversation:
    """Pages, counters, page table and search index of one conversation (the store's job
    in production; a dict and an in-process BM25 index here)."""

    def __init__(self, settings: VMSettings, counter: TokenCounter) -> None:
        self.settings = settings
        self.counter = counter
        self.counters = Counters()
        self.table = PageTable()
        self.index: BM25Index[str] = BM25Index()
        self.pages: dict[str, Page] = {}
        self.stages: dict[str, list[float]] = {}
        # Document frequencies, as a store keeps them: they pick a query's rarest terms.
        self.doc_freq: TermCounter[str] = TermCounter()
        self.tokens = 0  # of the messages resent verbatim, as the conversation state keeps

    def ingest(self, messages: list[dict[str, Any]]) -> None:
        result = ingest_messages(
            messages,
            first_position=self.counters.messages,
            counters=self.counters,
            counter=self.counter,
            segment_turns=self.settings.segment_turns,
        )
        for page in result.pages:
            self._add(page)
        jobs = list(result.segment_jobs)
        while jobs:
            job = jobs.pop(0)
            covered = [self.pages[i] for i in job.page_ids() if i in self.pages]
            summary = build_summary(job, covered, counter=self.counter)
            self._add(summary)
            jobs.extend(record_summary(self.counters, summary))

    def _add(self, page: Page) -> None:
        self.pages[page.page_id] = page
        self.tokens += int(page.extra.get("msg_tokens", 0))
        tokens = page_search_tokens(page)
        self.doc_freq.update(set(tokens))
        self.index.add_tokens(page.page_id, tokens)

    def prepare(self, body: dict[str, Any], new: dict[str, Any]) -> int:
        """Everything between a request's arrival and the upstream call; returns tokens."""
        clock = time.perf_counter
        t0 = clock()
        self.ingest([new])
        t1 = clock()
        turn = self.counters.turns
        average = self.tokens / max(self.counters.messages, 1)
        plan = plan_prefetch(
            self.counters,
            self.table,
            turn=turn,
            user_text=new["content"],
            pin_last_turns=self.settings.pin_last_turns,
            doc_freq=self.doc_freq.__getitem__,
            limit=search_limit(self.settings.context_budget, average),
        )
        hits = [(self.pages[k], s) for k, s in self.index.search(plan.query, plan.search_limit)]
        t2 = clock()
        # What the loop reads next: the messages around the hits, and more of the turns
        # before the tail when the hits cannot fill the budget.
        plan = widen_recent(plan, [p for p, _ in hits], budget=self.settings.context_budget,
                            message_tokens=average, preamble=self.counters.preamble)
        lo, hi = plan.recent
        near = around_ids([p for p, _ in hits], plan, self.counters.preamble)
        ids = [*plan.page_ids(), *near, *(f"msg_{p}" for p in range(lo, hi))]
        loaded = [self.pages[i] for i in dict.fromkeys(ids) if i in self.pages]
        tail = [self.pages[f"msg_{p}"] for p in range(plan.pinned_from, self.counters.messages)]
        candidates = gather_candidates(
            hits=hits, pages=loaded, plan=plan, exclude=[p.page_id for p in tail]
        )
        t3 = clock()
        packed = pack_request(
            body,
            system_messages=body["messages"][: self.counters.preamble],
            tail=tail,
            candidates=candidates,
            table=self.table,
            options=pack_options(self.settings),
            mode="strict",
            counter=self.counter,
            turn=turn,
            terms=search_tokens(new["content"]),
            around={p.anchor: p for p in loaded if p.page_id.startswith("msg_")},
            total_pages=len(self.pages),
        )
        self.table.note_mapped(packed.mapped, turn)
        t4 = clock()
        for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            self.stages.setdefault(stage, []).append(seconds * 1e3)
        return packed.prompt_tokens


def measure(turns: int, steps: int, settings: VMSettings) -> dict[str, float]:
    words = Words()
    counter = counter_for_model(MODEL)
    history = conversation(turns, words)
    started = time.perf_counter()
    convo = Conversation(settings, counter)
    convo.ingest(history)
    setup_s = time.perf_counter() - started

    fresh = TokenCounter(counter.encoding, counter.format)  # no memo: a real first count
    started, cpu = time.perf_counter(), time.thread_time()
    history_tokens = fresh.messages(history)
    tokenize_ms = (time.perf_counter() - started) * 1e3
    tokenize_cpu_ms = (time.thread_time() - cpu) * 1e3

    hash_runs = []
    for _ in range(3):
        started = time.perf_counter()
        chain_hashes("tenant", history)
        hash_runs.append((time.perf_counter() - started) * 1e3)
    hash_ms = min(hash_runs)

    messages = list(history)
    timings: list[float] = []
    cpu_timings: list[float] = []
    prompt = 0
    for step in range(steps):
        topic = (turns + step) // 12 + step % 3
        new = {"role": "user", "content": words.sentence(topic, 14) + " " + words.sentence(1, 10)}
        messages.append(new)
        body = {"model": MODEL, "messages": messages}
        started, cpu = time.perf_counter(), time.thread_time()
        prompt = convo.prepare(body, new)
        timings.append((time.perf_counter() - started) * 1e3)
        cpu_timings.append((time.thread_time() - cpu) * 1e3)
        reply = {"role": "assistant", "content": words.sentence(topic, 40)}
        messages.append(reply)
        convo.ingest([reply])
    timings.sort()
    return {
        "turns": turns,
        "messages": len(history),
        "pages": len(convo.pages),
        "history_tokens": history_tokens,
        "setup_s": setup_s,
        "tokenize_ms": tokenize_ms,
        "tokenize_cpu_ms": tokenize_cpu_ms,
        "p50_ms": statistics.median(timings),
        "p90_ms": timings[int(0.9 * (len(timings) - 1))],
        "min_ms": timings[0],
        "cpu_p50_ms": statistics.median(cpu_timings),
        "prompt_tokens": prompt,
        "hash_ms": hash_ms,
        "hash_us_per_msg": hash_ms * 1e3 / len(history),
        "stages": {k: statistics.median(v) for k, v in convo.stages.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", default="100,1000,10000")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--budget", type=int, default=8000)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    settings = VMSettings(context_budget=args.budget, activate_above=0)
    print(f"model {MODEL}, vm.context_budget {args.budget}, {args.steps} new messages per size")
    print(
        f"{'turns':>6} {'msgs':>6} {'pages':>6} {'hist tok':>8} | {'tokenize':>8} "
        f"{'prepare':>7} {'ratio':>6} | {'tokenize':>8} {'p50':>6} {'p90':>6} {'min':>6} | "
        f"{'sent':>5} {'hash':>6} {'us/msg':>6}"
    )
    print(f"{'':>30} | {'CPU ms':^22} | {'wall ms':^29} |")
    for turns in (int(t) for t in args.turns.split(",")):
        r = measure(turns, args.steps, settings)
        rows.append(r)
        ratio = r["cpu_p50_ms"] / r["tokenize_cpu_ms"] if r["tokenize_cpu_ms"] else float("nan")
        print(
            f"{r['turns']:>6} {r['messages']:>6} {r['pages']:>6} {r['history_tokens']:>8} | "
            f"{r['tokenize_cpu_ms']:>8.2f} {r['cpu_p50_ms']:>7.2f} {ratio:>6.3f} | "
            f"{r['tokenize_ms']:>8.2f} {r['p50_ms']:>6.2f} {r['p90_ms']:>6.2f} "
            f"{r['min_ms']:>6.2f} | {r['prompt_tokens']:>5} {r['hash_ms']:>6.2f} "
            f"{r['hash_us_per_msg']:>6.2f}",
            flush=True,
        )
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
        print(f"{'':>6} wall p50 by stage (ms): {stages}; setup {r['setup_s']:.1f} s", flush=True)
    print(
        "prepare = ingest of the new message + BM25 search + prefetch + select + pin + manifest"
        " + pack;\nratio = prepare / tokenizing the full history once (CPU time of this thread,"
        " robust to\nother processes on the machine); sent = prompt tokens sent upstream;"
        " hash = chain hashes\nof a full resend (wall ms, and per message)."
    )
    if args.json:
        args.json.write_text(json.dumps({
            "benchmark": "prepare",
            "command": "python benchmarks/prepare.py " + " ".join(sys.argv[1:]),
            "budget": args.budget,
            "steps": args.steps,
            "rows": rows,
        }, indent=2))


if __name__ == "__main__":
    main()
