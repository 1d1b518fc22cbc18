"""Page store benchmark: write rate, search latency, and the store cost of one VM turn.

    python benchmarks/store.py                       # 10k pages over 1k conversations
    python benchmarks/store.py --pages 1000000       # the 1M-page corpus (minutes)
    python benchmarks/store.py --postgres postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/store.py --json benchmarks/results/store.json

Three measurements per backend (memory, sqlite, postgres when reachable; "+cache" is the
same backend behind CachedStore, as the app runs it by default):
1. corpus: `--pages` pages over `--convs` conversations, appended `--batch` pages per
   `append`, as pages/s; the baseline is raw sqlite3 inserting the same bodies in
   transactions of the same size, measured in the same run.
2. search: p50/p99 of `search(limit 5)` on a random conversation's path of that corpus,
   2-3 query words drawn from the corpus's own Zipf-distributed vocabulary.
3. turn: one conversation of `--turn-pages` pages, and per turn the store calls the fault
   loop makes for one VM-active request that resends its history (proxy/loop), no faults:
   - place: `append` of the user's message with the conversation state (~5 KB: page
     table, frame, counters). The row it names the version of is the one the previous
     turn's append returned (the loop remembers it), so no read comes first. The
     `search(limit 12)` for the user's message is issued right after it, before the append
     is done, as the loop does (proxy/loop/early_search.py);
   - prepare: once the append is done, three reads issued together (`asyncio.gather`)
     with the search: the system prompt's range, the window of turns since the frame's
     start (20 to 80 messages, as it grows between compactions), `get_pages` of 40 ids
     (the 12 messages before the window and 28 pages of the frozen frame);
   - finish: `append` of the answer with the state and the turn's 48 mutation records.
   p50/p99 of the sum; the baseline is the memory store. The breakdown gives each call's
   median ("prepare reads" is the gather; its calls overlap), and "place cold": what
   placing costs instead when no row is remembered (after a restart, or on a replica
   that did not serve the previous turn): `lookup_hashes`, `get_conversation` and `path`
   together, before the append.
The machine is shared and small: treat the figures as indications, compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path as FsPath
from typing import TypeVar

sys.path.insert(0, str(FsPath(__file__).resolve().parents[1]))

from proxy.store import open_store  # noqa: E402
from proxy.store.base import Conversation, PageStore, Path  # noqa: E402
from proxy.store.codec import encode_page  # noqa: E402
from proxy.store.postgres import PostgresStore  # noqa: E402
from proxy.vm.mutations import Mutation  # noqa: E402
from proxy.vm.pages import Modality, Page, PageKind  # noqa: E402

TENANT = "bench"
T = TypeVar("T")
SYLLABLES = "ka lo mi ne su ta ri po ve an el is or um ba de fi go hu ja".split()


class Corpus:
    """Deterministic pseudo-words with Zipf frequencies, so some terms are everywhere.

    The 50 most frequent words play the part of function words a stop list misses (the
    commonest is on nearly every page); `query()` draws content words, `common_query()`
    draws from the whole distribution (the worst case: a query term on every page).
    """

    FUNCTION_WORDS = 50

    def __init__(self, seed: int = 7, vocabulary: int = 5000) -> None:
        self.rng = random.Random(seed)
        words: set[str] = set()
        while len(words) < vocabulary:
            words.add("".join(self.rng.choices(SYLLABLES, k=self.rng.randint(2, 4))))
        self.words = sorted(words)
        self.rng.shuffle(self.words)
        self.cum = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(vocabulary)))
        self.content = self.words[self.FUNCTION_WORDS :]
        self.content_cum = list(itertools.accumulate(
            1.0 / (rank + 1) for rank in range(self.FUNCTION_WORDS, vocabulary)))

    def text(self, n_words: int) -> str:
        return " ".join(self.rng.choices(self.words, cum_weights=self.cum, k=n_words))

    def query(self) -> str:
        k = self.rng.randint(2, 3)
        return " ".join(self.rng.choices(self.content, cum_weights=self.content_cum, k=k))

    def common_query(self) -> str:
        k = self.rng.randint(2, 3)
        return " ".join(self.rng.choices(self.words, cum_weights=self.cum, k=k))

    def page(self, number: int, conv: str) -> Page:
        text = self.text(self.rng.randint(30, 90))
        return Page(
            page_id=f"msg_{number}",
            kind=PageKind.TRANSCRIPT,
            modality=Modality.TEXT,
            anchor=number,
            turn=number // 2,
            role="user" if number % 2 == 0 else "assistant",
            renderings=(text, text[:200], text[:80], f"msg_{number}"),
            tokens=(len(text) // 4, 50, 20, 3),
            hint=text[:40],
            chain_hash=f"{conv}:{number}",
            message={"role": "user", "content": text},
            created_at=1_700_000_000.0 + number,
        )


def quantiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


async def timed(samples: list[float], op: Awaitable[object]) -> None:
    start = time.perf_counter()
    await op
    samples.append(time.perf_counter() - start)


async def fill(store: PageStore, corpus: Corpus, pages: int, convs: int, batch: int) -> float:
    """Append `pages` pages round-robin over `convs` conversations; pages per second."""
    per_conv = max(1, pages // convs)
    versions: dict[str, int] = {}
    for c in range(convs):
        await store.create_conversation(TENANT, f"conv{c}")
        versions[f"conv{c}"] = 0
    elapsed = 0.0
    written = 0
    for offset in range(0, per_conv, batch):
        for c in range(convs):
            conv = f"conv{c}"
            count = min(batch, per_conv - offset)
            chunk = [corpus.page(offset + k, conv) for k in range(count)]
            start = time.perf_counter()
            await store.append(TENANT, conv, chunk, expected_version=versions[conv],
                               new_length=offset + count)
            elapsed += time.perf_counter() - start
            versions[conv] += 1
            written += count
    return written / elapsed


def raw_sqlite_rate(corpus: Corpus, pages: int, batch: int, directory: str) -> float:
    conn = sqlite3.connect(os.path.join(directory, "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, conv TEXT, page_id TEXT, body BLOB)")
    bodies = [encode_page(corpus.page(n, "raw")) for n in range(min(pages, 20_000))]
    start = time.perf_counter()
    for offset in range(0, len(bodies), batch):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO pages (conv, page_id, body) VALUES (?, ?, ?)",
            [("raw", f"msg_{offset + k}", body) for k, body in
             enumerate(bodies[offset : offset + batch])],
        )
        conn.execute("COMMIT")
    rate = len(bodies) / (time.perf_counter() - start)
    conn.close()
    return rate


async def search_latency(
    store: PageStore, corpus: Corpus, convs: list[str], rounds: int, *, common: bool = False
) -> tuple[float, float]:
    samples: list[float] = []
    for _ in range(rounds):
        path = await store.path(TENANT, corpus.rng.choice(convs))
        query = corpus.common_query() if common else corpus.query()
        await timed(samples, store.search(path, query, limit=5))
    return quantiles(samples)


SEARCH_LIMIT = 12  # proxy.vm.prefetch.SEARCH_HITS
MUTATIONS_PER_TURN = 48  # what a VM turn of benchmarks/vm_turn.py logs when it finishes


def turn_state(turn: int) -> dict[str, object]:
    """A conversation state of the size a VM turn writes (about 5 KB)."""
    table = [[f"msg_{n}", n % 4, turn - n % 7, n % 3, 0] for n in range(210)]
    return {
        "hash": f"{turn:064x}",
        "tokens": 64_000 + turn,
        "counters": {"messages": 2 * turn, "turns": turn, "user_positions": list(range(8))},
        "table": {"entries": table},
        "frame": {"start": 2 * turn - 40, "ids": [f"msg_{n}" for n in range(28)]},
    }


class TurnLoop:
    """The store calls of one VM turn on one conversation, as the fault loop makes them."""

    def __init__(self, store: PageStore, corpus: Corpus, conv: str, current: Conversation,
                 timings: dict[str, list[float]] | None = None) -> None:
        self.store, self.corpus, self.conv, self.current = store, corpus, conv, current
        self.turn = 0
        self.timings = timings
        self.path: Path | None = None  # never changes: the loop remembers it with the row
        length = current.length
        self.frame_ids = [f"msg_{corpus.rng.randrange(max(1, length - 200))}"
                          for _ in range(28)]

    async def op(self, name: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        result = await call
        if self.timings is not None:
            self.timings.setdefault(name, []).append(time.perf_counter() - start)
        return result

    async def run(self) -> float:
        """One turn; returns the seconds spent in store calls (what the loop computes
        between them, here the pages, states and records, is made beforehand)."""
        store, corpus, conv = self.store, self.corpus, self.conv
        self.turn += 1
        length = self.current.length
        if self.path is None:
            self.path = await store.path(TENANT, conv)
        path = self.path
        question, answer = corpus.page(length, conv), corpus.page(length + 1, conv)
        state = turn_state(self.turn)
        window = length + 1 - (20 + 2 * (self.turn % 30))
        before = [f"msg_{n}" for n in range(window - 12, window)]
        query = corpus.query()
        mutations = [Mutation(self.turn, "map", f"msg_{n}", n % 4)
                     for n in range(MUTATIONS_PER_TURN)]
        start = time.perf_counter()
        place = asyncio.ensure_future(self.op("append (place)", store.append(
            TENANT, conv, [question], expected_version=self.current.version,
            new_length=length + 1, state=state)))
        search = asyncio.ensure_future(
            self.op("search", store.search(path, query, limit=SEARCH_LIMIT)))
        self.current = await place
        await self.op("prepare reads", asyncio.gather(
            self.op("pages_in_range system", store.pages_in_range(path, 0, 1)),
            self.op("pages_in_range window", store.pages_in_range(path, window, length + 1)),
            self.op("get_pages", store.get_pages(path, [*before, *self.frame_ids])),
            search,
        ))
        self.current = await self.op("append (finish)", store.append(
            TENANT, conv, [answer], expected_version=self.current.version,
            new_length=length + 2, state=state, mutations=mutations))
        return time.perf_counter() - start


async def filled_conversation(
    store: PageStore, corpus: Corpus, conv: str, pages: int
) -> Conversation:
    current = await store.create_conversation(TENANT, conv)
    for offset in range(0, pages, 500):
        chunk = [corpus.page(n, conv) for n in range(offset, min(pages, offset + 500))]
        current = await store.append(TENANT, conv, chunk, expected_version=current.version,
                                     new_length=offset + len(chunk))
    return current


async def turn_cost(
    store: PageStore, corpus: Corpus, pages: int, turns: int
) -> tuple[float, float, dict[str, float]]:
    conv = f"turn-{uuid.uuid4().hex[:8]}"
    current = await filled_conversation(store, corpus, conv, pages)
    await settle(store)
    per_op: dict[str, list[float]] = {}
    loop = TurnLoop(store, corpus, conv, current, per_op)
    await loop.run()  # the first turn reads what later turns find cached
    per_op.clear()
    totals = [await loop.run() for _ in range(turns)]
    p50, p99 = quantiles(totals)
    breakdown = {name: statistics.median(s) for name, s in per_op.items()}
    cold: list[float] = []
    for _ in range(max(30, turns // 5)):
        length = loop.current.length
        await timed(cold, asyncio.gather(
            store.lookup_hashes(TENANT, [f"{conv}:{length - 1}"]),
            store.get_conversation(TENANT, conv),
            store.path(TENANT, conv),
        ))
    breakdown["place cold reads"] = statistics.median(cold)
    breakdown["search common"] = (await search_latency(
        store, corpus, [conv], max(30, turns // 5), common=True))[0]
    return p50, p99, breakdown


async def settle(store: PageStore) -> None:
    """PostgreSQL: what autovacuum would have done by now (planner statistics, visibility
    map for index-only scans); run after each bulk load."""
    inner = getattr(store, "inner", store)
    if isinstance(inner, PostgresStore):
        await inner.vacuum_analyze()


async def concurrent_turns(
    store: PageStore, corpus: Corpus, tasks: int, turns: int, pages: int
) -> float:
    """Turns per second with `tasks` conversations served at once (one turn per task at a
    time): where reader threads or a connection pool can overlap work."""
    loops = []
    for _ in range(tasks):
        conv = f"cc-{uuid.uuid4().hex[:8]}"
        current = await filled_conversation(store, corpus, conv, pages)
        loops.append(TurnLoop(store, corpus, conv, current))
    await settle(store)

    async def serve(loop: TurnLoop) -> None:
        for _ in range(turns):
            await loop.run()

    start = time.perf_counter()
    await asyncio.gather(*(serve(loop) for loop in loops))
    return tasks * turns / (time.perf_counter() - start)


async def open_backend(name: str, url: str) -> PageStore:
    cached = name.endswith("+cache")
    return await open_store(url, cache_pages=20_000 if cached else 0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--convs", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=2, help="pages per append when filling")
    parser.add_argument("--turn-pages", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--postgres", default=os.environ.get("VM_TEST_POSTGRES_URL", ""))
    parser.add_argument("--only", default="", help="comma-separated backend names to run")
    parser.add_argument("--json", type=FsPath, help="write the results here")
    parser.add_argument("--append", action="store_true",
                        help="add this run's rows to those already in --json")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="vm-store-bench-")
    schema = f"vmbench_{uuid.uuid4().hex[:8]}"
    backends = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp}/bench.db",
        "sqlite readers=0": f"sqlite:///{tmp}/bench0.db?readers=0",
        "sqlite+cache": f"sqlite:///{tmp}/bench-c.db",
    }
    if args.pages > 200_000:
        del backends["memory"]  # a million Page objects in dicts is not a store
    if args.postgres:
        sep = "&" if "?" in args.postgres else "?"
        backends["postgres"] = f"{args.postgres}{sep}schema={schema}"
        backends["postgres+cache"] = f"{args.postgres}{sep}schema={schema}_c"

    if args.only:
        wanted = set(args.only.split(","))
        backends = {name: url for name, url in backends.items() if name in wanted}
    raw = raw_sqlite_rate(Corpus(), args.pages, args.batch, tmp)
    print(f"corpus {args.pages} pages / {args.convs} conversations, {args.batch} pages per "
          f"append; turn conversation {args.turn_pages} pages; {os.cpu_count()} cpus")
    print(f"baseline raw sqlite3 insert: {raw:,.0f} pages/s")
    print(f"{'backend':18} {'write p/s':>10} {'vs raw':>7} {'search p50':>11} "
          f"{'p99':>8} {'turn p50':>9} {'p99':>8} {'vs memory':>9}")
    memory_turn = None
    breakdowns: dict[str, dict[str, float]] = {}
    rows: list[dict[str, object]] = []
    for name, url in backends.items():
        try:
            store = await open_backend(name, url)
        except OSError as exc:
            print(f"{name:18} unreachable: {exc}")
            continue
        try:
            corpus = Corpus()
            rate = await fill(store, corpus, args.pages, args.convs, args.batch)
            await settle(store)
            names = [f"conv{c}" for c in range(args.convs)]
            s50, s99 = await search_latency(store, corpus, names, args.searches)
            t50, t99, breakdown = await turn_cost(store, corpus, args.turn_pages, args.turns)
            # Not a duration: shown in the same table, as turns per second.
            breakdown["8 convs turns/s"] = await concurrent_turns(
                store, corpus, 8, max(10, args.turns // 10), 2000) / 1e3
        finally:
            inner = getattr(store, "inner", store)
            if isinstance(inner, PostgresStore):
                await inner.drop_schema()
            await store.close()
        memory_turn = memory_turn or (t50 if name == "memory" else None)
        ratio = f"{t50 / memory_turn:8.1f}x" if memory_turn else "        -"
        breakdowns[name] = breakdown
        print(f"{name:18} {rate:10,.0f} {rate / raw:6.2f}x {s50 * 1e3:9.2f}ms "
              f"{s99 * 1e3:6.2f}ms {t50 * 1e3:7.2f}ms {t99 * 1e3:6.2f}ms {ratio}")
        rows.append({
            "corpus_pages": args.pages, "turn_pages": args.turn_pages, "backend": name,
            "write_pages_per_s": round(rate), "write_vs_raw": round(rate / raw, 3),
            "search_p50_ms": round(s50 * 1e3, 3), "search_p99_ms": round(s99 * 1e3, 3),
            "turn_p50_ms": round(t50 * 1e3, 3), "turn_p99_ms": round(t99 * 1e3, 3),
            "turn_vs_memory": round(t50 / memory_turn, 2) if memory_turn else None,
            "turns_per_s_8_convs": round(breakdown["8 convs turns/s"] * 1e3, 1),
        })
    print("\nturn breakdown, median ms per call ('prepare reads': the three reads and the"
          " search, from the place append's end;"
          " 'place cold reads': see the docstring; 'search common': a query with a word on"
          " most pages; '8 convs turns/s': turns per second, 8 conversations at once):")
    names = list(breakdowns)
    ops = list(dict.fromkeys(op for b in breakdowns.values() for op in b))
    print(f"{'':24} " + " ".join(f"{name[:16]:>16}" for name in names))
    for op in ops:
        cells = [breakdowns[name].get(op) for name in names]
        print(f"{op:24} " + " ".join(
            f"{cell * 1e3:16.3f}" if cell is not None else f"{'':16}" for cell in cells))
    if args.json:
        write_json(args.json, args, raw, rows, breakdowns)


def write_json(
    target: FsPath, args: argparse.Namespace, raw: float, rows: list[dict[str, object]],
    breakdowns: dict[str, dict[str, float]],
) -> None:
    """The results page's format (`rows` is its table); `--append` keeps earlier runs."""
    run = {
        "command": "python benchmarks/store.py " + " ".join(sys.argv[1:]),
        "settings": {"pages": args.pages, "convs": args.convs, "batch": args.batch,
                     "turn_pages": args.turn_pages, "turns": args.turns,
                     "searches": args.searches},
        "raw_sqlite_pages_per_s": round(raw),
        "turn_breakdown_ms": {
            name: {op: round(v * 1e3, 3) for op, v in b.items() if op != "8 convs turns/s"}
            for name, b in breakdowns.items()
        },
    }
    runs = [run]
    if args.append and target.exists():
        earlier = json.loads(target.read_text())
        runs = [*earlier.get("runs", []), run]
        rows = [*earlier.get("rows", []), *rows]
    payload = {
        "benchmark": "store",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "sqlite": sqlite3.sqlite_version},
        "rows": rows,
        "runs": runs,
        "command": " ; ".join(str(r["command"]) for r in runs),
        "note": "turn: the store calls of one VM-active request as the fault loop makes"
                " them (an append placing the user's message with the search issued right"
                " behind it, three reads together with that search, an append storing the"
                " answer with the state and mutations); see the script's docstring. Noisy"
                " 2-core machine shared with other work.",
    }
    target.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
