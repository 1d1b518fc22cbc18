"""Page store benchmark: write rate, search latency, and the store cost of one VM turn.

    python benchmarks/store.py                       # 10k pages over 1k conversations
    python benchmarks/store.py --pages 1000000       # the 1M-page corpus (minutes)
    python benchmarks/store.py --postgres postgresql://postgres@127.0.0.1:5432/test

Three measurements per backend (memory, sqlite, postgres when reachable; "+cache" is the
same backend behind CachedStore):
1. corpus: `--pages` pages over `--convs` conversations, appended `--batch` pages per
   `append` (a turn appends 2), as pages/s; the baseline is raw sqlite3 inserting the same
   bodies in transactions of the same size, measured in the same run.
2. search: p50/p99 of `search(limit 5)` on a random conversation's path of that corpus,
   2-3 query words drawn from the corpus's own Zipf-distributed vocabulary.
3. turn: one conversation of `--turn-pages` pages; per turn lookup_hashes (last 3 hashes),
   get_conversation, path, search (limit 5), get_pages (5 ids), pages_in_range (last 3
   turns), append (2 pages). p50/p99 of the sum; the baseline is the memory store.
The machine is shared and small: treat the figures as indications, compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
from proxy.store.base import PageStore  # noqa: E402
from proxy.store.codec import encode_page  # noqa: E402
from proxy.store.postgres import PostgresStore  # noqa: E402
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


async def turn_cost(
    store: PageStore, corpus: Corpus, pages: int, turns: int
) -> tuple[float, float, dict[str, float]]:
    conv = f"turn-{uuid.uuid4().hex[:8]}"
    await store.create_conversation(TENANT, conv)
    version = 0
    for offset in range(0, pages, 500):
        chunk = [corpus.page(n, conv) for n in range(offset, min(pages, offset + 500))]
        version = (await store.append(TENANT, conv, chunk, expected_version=version,
                                      new_length=offset + len(chunk))).version
    await settle(store)
    length = pages
    totals: list[float] = []
    per_op: dict[str, list[float]] = {}

    async def op(name: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        result = await call
        per_op.setdefault(name, []).append(time.perf_counter() - start)
        return result

    for _ in range(turns):
        new = [corpus.page(length, conv), corpus.page(length + 1, conv)]
        query = corpus.query()
        start = time.perf_counter()
        hashes = [f"{conv}:{length - 2}", f"{conv}:{length - 1}", f"{conv}:{length}"]
        await op("lookup_hashes", store.lookup_hashes(TENANT, hashes))
        current = await op("get_conversation", store.get_conversation(TENANT, conv))
        assert current is not None
        path = await op("path", store.path(TENANT, conv))
        await op("search", store.search(path, query, limit=5))
        ids = [f"msg_{corpus.rng.randrange(length)}" for _ in range(5)]
        await op("get_pages", store.get_pages(path, ids))
        await op("pages_in_range", store.pages_in_range(path, length - 6, length))
        await op("append", store.append(TENANT, conv, new, expected_version=current.version,
                                        new_length=length + 2))
        length += 2
        totals.append(time.perf_counter() - start)
    p50, p99 = quantiles(totals)
    breakdown = {name: statistics.median(s) for name, s in per_op.items()}
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
    convs = [f"cc-{uuid.uuid4().hex[:8]}" for _ in range(tasks)]
    for conv in convs:
        await store.create_conversation(TENANT, conv)
        chunk = [corpus.page(n, conv) for n in range(pages)]
        await store.append(TENANT, conv, chunk, expected_version=0, new_length=pages)
    await settle(store)

    async def serve(conv: str) -> None:
        for _ in range(turns):
            current = await store.get_conversation(TENANT, conv)
            assert current is not None
            path = await store.path(TENANT, conv)
            length = current.length
            await store.lookup_hashes(TENANT, [f"{conv}:{length - 1}", f"{conv}:{length}"])
            await store.search(path, corpus.query(), limit=5)
            await store.get_pages(path, [f"msg_{corpus.rng.randrange(length)}" for _ in "12345"])
            await store.pages_in_range(path, length - 6, length)
            new = [corpus.page(length, conv), corpus.page(length + 1, conv)]
            await store.append(TENANT, conv, new, expected_version=current.version,
                               new_length=length + 2)

    start = time.perf_counter()
    await asyncio.gather(*(serve(conv) for conv in convs))
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
    print("\nturn breakdown, median ms per op ('search common': a query with a word that is"
          " on most pages; '8 convs turns/s': turns per second, 8 conversations at once):")
    ops = list(next(iter(breakdowns.values()), {}))
    print(f"{'backend':18} " + " ".join(f"{op[:14]:>14}" for op in ops))
    for name, breakdown in breakdowns.items():
        print(f"{name:18} " + " ".join(f"{breakdown[op] * 1e3:14.3f}" for op in ops))


if __name__ == "__main__":
    asyncio.run(main())
