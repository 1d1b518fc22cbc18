"""Embeddings (issue 14): how fast the local model embeds, and what vector search adds to a
memory-active turn.

    python benchmarks/embeddings.py [--messages 256] [--pages 10000] [--passages 2]
        [--rounds 3] [--skip-throughput] [--skip-search] [--skip-kernels] [--json PATH]

1. Throughput: the dialogue dataset's messages through the ONNX model
   (../shared/models/all-MiniLM-L6-v2-int8, skipped with a reason when absent) in batches
   (onnxruntime runs) of 1, 8, 16 and 32 texts, one onnxruntime thread, as the background
   worker runs it; messages per second, and each batch size's ratio to batch size 1
   measured in the same round.
2. Search: a SQLite store holding one conversation of `--pages` message pages with their
   384-dimension vectors (`--passages` rows each); the p50 of a vector search over its
   path (`VectorIndex.search`, the mark read included, the matrix cached as in the proxy)
   beside the p50 of the BM25 search the turn runs anyway (the baseline, same run), and
   their ratio; then the two run together (`asyncio.gather`, as a turn's prefetch runs
   them) and what the vector search adds to the BM25 search's p50: what a memory-active
   turn pays for it.
3. Kernels: the same number of rows scored one query at a time by the candidates for the
   product, p50 each: numpy float32 (what the search does), float16, int8 (its own matmul,
   and widened to float32 in blocks), float32 at half the dimension; and sqlite-vec
   (`pip install sqlite-vec`, into a Python whose sqlite3 can load extensions; skipped with
   the reason otherwise), its vec0 table's exact k-nearest query and a plain scan by
   `vec_distance_cosine`, with how many of numpy's top 100 each finds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import proxy.embeddings  # noqa: E402,F401  (before numpy: it sets numpy's threads as the proxy does)

MODEL_DIR = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-int8"
BATCHES = (1, 8, 16, 32)


def dialogue_texts(count: int) -> list[str]:
    from benchmarks.recall.dialogue.generate import generate_dialogues

    chats = generate_dialogues(7, 2, 24, 4)
    texts = [str(m.get("content") or "") for chat in chats for m in chat.messages[1:]]
    return texts[:count]


def throughput(texts: list[str], rounds: int) -> dict[str, Any]:
    from proxy.embeddings.local import OnnxEmbedder

    embedder = OnnxEmbedder.load(str(MODEL_DIR))
    per_batch: dict[int, list[float]] = {b: [] for b in BATCHES}
    ratios: dict[int, list[float]] = {b: [] for b in BATCHES}
    embedder.embed_now(texts[:32])  # warm-up
    for _ in range(rounds):
        rates = {}
        for batch in BATCHES:
            embedder.run_size = batch
            started = time.perf_counter()
            for start in range(0, len(texts), batch):
                embedder.embed_now(texts[start : start + batch])
            rates[batch] = len(texts) / (time.perf_counter() - started)
            per_batch[batch].append(rates[batch])
        for batch in BATCHES:
            ratios[batch].append(rates[batch] / rates[1])
    asyncio.run(embedder.aclose())
    return {
        "messages": len(texts),
        "mean_chars": statistics.mean(len(t) for t in texts),
        "messages_per_s": {b: per_batch[b] for b in BATCHES},
        "ratio_to_batch_1": {b: ratios[b] for b in BATCHES},
    }


async def search_latency(pages: int, rounds: int, per_page: int = 2,
                         dim: int = 384) -> dict[str, Any]:  # fmt: skip
    import numpy as np

    from proxy.store import open_store
    from proxy.store.vectors import open_vectors
    from proxy.vm.pages import Modality, Page, PageKind
    from proxy.vm.passages import passage_id

    texts = dialogue_texts(2000)
    rng = np.random.default_rng(7)
    folder = Path(tempfile.mkdtemp(prefix="vm-vectors-"))
    store = await open_store(f"sqlite:///{folder / 'vm.db'}")
    try:
        conv = await store.create_conversation("t", "c")
        made = []
        for n in range(pages):
            text = texts[n % len(texts)]
            made.append(Page(
                page_id=f"msg_{n}", kind=PageKind.TRANSCRIPT, modality=Modality.TEXT, anchor=n,
                turn=n // 2, role="user" if n % 2 == 0 else "assistant",
                renderings=(text, text, text[:80], f"msg_{n}"),
                tokens=(len(text) // 4 + 1,) * 3 + (3,), hint=text[:30], chain_hash=f"h{n}",
                message={"role": "user", "content": text},
            ))  # fmt: skip
        await store.append("t", "c", made, expected_version=conv.version, new_length=pages)
        index = await open_vectors(store)
        vectors = rng.standard_normal((pages * per_page, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for start in range(0, pages, 1000):
            rows = [(passage_id(f"msg_{n}", k), n, vectors[n * per_page + k].tobytes())
                    for n in range(start, min(pages, start + 1000))
                    for k in range(per_page)]  # fmt: skip
            await index.save("t", "c", "bench", rows, min(pages, start + 1000))
        path = await store.path("t", "c")
        queries = rng.standard_normal((200, dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        words = [" ".join(texts[i].split()[:6]) for i in range(200)]
        # The search is exact: its top 100 against a brute-force ranking (a page at its
        # best passage), on the first queries.
        identical = 0
        for query in queries[:20]:
            found = [pid for pid, _ in await index.search(path, "bench", query, 100)]
            best = (vectors @ query).reshape(pages, per_page).max(axis=1)
            identical += found == [f"msg_{n}" for n in np.argsort(-best, kind="stable")[:100]]
        vector_ms: list[float] = []
        bm25_ms: list[float] = []
        both_ms: list[float] = []
        turn_adds_ms: list[float] = []
        ratios: list[float] = []
        vector_cpu_ms: list[float] = []
        for _ in range(rounds):
            one_vector, one_bm25, one_both = [], [], []
            cpu_started = time.process_time()
            for i in range(200):
                started = time.perf_counter()
                await index.search(path, "bench", queries[i], 100)
                one_vector.append((time.perf_counter() - started) * 1000)
            vector_cpu_ms.append((time.process_time() - cpu_started) * 1000 / 200)
            # BM25 alone, then BM25 and the vector search together, query by query: the
            # difference is what the vector search adds to the turn, paired so that what
            # other processes do to the machine moves both sides alike.
            added = []
            for i in range(200):
                started = time.perf_counter()
                await store.search(path, words[i], limit=100)
                one_bm25.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await asyncio.gather(store.search(path, words[i], limit=100),
                                     index.search(path, "bench", queries[i], 100))
                one_both.append((time.perf_counter() - started) * 1000)
                added.append(one_both[-1] - one_bm25[-1])
            turn_adds_ms.append(statistics.median(added))
            vector_ms.append(statistics.median(one_vector))
            bm25_ms.append(statistics.median(one_bm25))
            both_ms.append(statistics.median(one_both))
            ratios.append(vector_ms[-1] / bm25_ms[-1])
        # CPU time (this process, every thread) per vector search: less moved by other
        # processes on a shared machine than wall time.
        return {"pages": pages, "rows_per_page": per_page, "dim": dim, "limit": 100,
                "top_100_as_brute_force": f"{identical} of 20 queries",
                "vector_p50_ms": vector_ms, "vector_cpu_ms_mean": vector_cpu_ms,
                "bm25_p50_ms": bm25_ms, "vector_over_bm25": ratios,
                "bm25_and_vector_p50_ms": both_ms,
                "turn_adds_ms": turn_adds_ms}  # fmt: skip
    finally:
        await store.close()


def kernels(rows: int, dim: int, rounds: int) -> dict[str, float | str]:
    import numpy as np

    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((rows, dim)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    query = matrix[1] + 0.1 * rng.standard_normal(dim).astype(np.float32)
    query /= np.linalg.norm(query)
    halves, half_query = matrix.astype(np.float16), query.astype(np.float16)
    as_int8 = np.round(matrix * 127 / np.abs(matrix).max(axis=1, keepdims=True)).astype(np.int8)
    query_int8 = np.round(query * 127 / np.abs(query).max()).astype(np.int8)
    half_dim, half_dim_query = np.ascontiguousarray(matrix[:, : dim // 2]), query[: dim // 2]
    block = np.empty((512, dim), np.float32)

    def widened() -> None:
        for start in range(0, rows, 512):
            part = block[: min(512, rows - start)]
            part[...] = as_int8[start : start + 512]
            part @ query

    timed = {
        "float32": lambda: matrix @ query,
        "float16": lambda: halves @ half_query,
        "int8": lambda: np.matmul(as_int8, query_int8, dtype=np.int32),
        "int8 widened by blocks": widened,
        "float32 half dimension": lambda: half_dim @ half_dim_query,
    }
    found: dict[str, float | str] = {n: _p50_ms(fn, rounds * 20) for n, fn in timed.items()}
    found.update(_sqlite_vec(matrix, query, rounds))
    return found


def _p50_ms(fn: Any, times: int) -> float:
    taken = []
    for _ in range(times):
        started = time.perf_counter()
        fn()
        taken.append((time.perf_counter() - started) * 1000)
    return statistics.median(taken)


def _sqlite_vec(matrix: Any, query: Any, rounds: int) -> dict[str, float | str]:
    import sqlite3

    import numpy as np

    try:
        import sqlite_vec  # type: ignore[import-not-found]
    except ImportError:
        return {"sqlite-vec": "not installed (pip install sqlite-vec)"}
    db = sqlite3.connect(":memory:")
    if not hasattr(db, "enable_load_extension"):
        return {"sqlite-vec": "this Python's sqlite3 cannot load extensions"}
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.execute("CREATE VIRTUAL TABLE v USING vec0(conv TEXT PARTITION KEY,"
               f" embedding float[{matrix.shape[1]}] distance_metric=cosine)")  # fmt: skip
    db.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, conv TEXT, vector BLOB)")
    rows = [(n, matrix[n].tobytes()) for n in range(len(matrix))]
    db.executemany("INSERT INTO v (rowid, conv, embedding) VALUES (?, 'c', ?)", rows)
    db.executemany("INSERT INTO p VALUES (?, 'c', ?)", rows)
    exact = set(np.argsort(-(matrix @ query))[:100].tolist())
    blob = query.tobytes()
    knn = ("SELECT rowid, distance FROM v WHERE embedding MATCH ? AND k = 100"
           " AND conv = 'c'")  # fmt: skip
    scan = ("SELECT id, vec_distance_cosine(vector, ?) AS d FROM p WHERE conv = 'c'"
            " ORDER BY d LIMIT 100")  # fmt: skip
    found: dict[str, float | str] = {"sqlite-vec version": str(sqlite_vec.__version__)}
    for name, sql in (("sqlite-vec vec0 k=100", knn), ("sqlite-vec scan", scan)):
        found[name] = _p50_ms(lambda sql=sql: db.execute(sql, (blob,)).fetchall(), rounds * 5)
        hits = {row[0] for row in db.execute(sql, (blob,))}
        found[f"{name} of numpy's top 100"] = len(hits & exact)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=256)
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passages", type=int, default=2,
                        help="vector rows per page (messages are embedded as passages; the "
                        "dialogue set averages 1.7)")  # fmt: skip
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-kernels", action="store_true")
    args = parser.parse_args(argv)
    given = " ".join(sys.argv[1:] if argv is None else argv)
    report: dict[str, Any] = {"command": f"python benchmarks/embeddings.py {given}".strip()}
    if args.skip_throughput:
        pass
    elif (MODEL_DIR / "model.onnx").is_file():
        report["throughput"] = throughput(dialogue_texts(args.messages), args.rounds)
        for batch, rates in report["throughput"]["messages_per_s"].items():
            ratio = report["throughput"]["ratio_to_batch_1"][batch]
            print(f"onnx batch {batch:>2}: {min(rates):6.1f}-{max(rates):6.1f} messages/s "
                  f"({min(ratio):.2f}-{max(ratio):.2f}x batch 1)")  # fmt: skip
    else:
        print(f"throughput skipped: no model at {MODEL_DIR}", file=sys.stderr)
    if not args.skip_kernels:
        rows = args.pages * args.passages
        report["kernels"] = found = kernels(rows, 384, args.rounds)
        print(f"scoring {rows} rows of 384 dimensions, p50 ms: " + "; ".join(
            f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}"
            for name, value in found.items()))  # fmt: skip
    if args.skip_search:
        return _write(report, args.json)
    report["search"] = asyncio.run(search_latency(args.pages, args.rounds, args.passages))
    found = report["search"]
    print(f"vector search at {args.pages} pages: p50 {min(found['vector_p50_ms']):.2f}-"
          f"{max(found['vector_p50_ms']):.2f} ms; BM25 p50 {min(found['bm25_p50_ms']):.2f}-"
          f"{max(found['bm25_p50_ms']):.2f} ms; ratio {min(found['vector_over_bm25']):.2f}-"
          f"{max(found['vector_over_bm25']):.2f}; vector CPU per search "
          f"{min(found['vector_cpu_ms_mean']):.2f}-"
          f"{max(found['vector_cpu_ms_mean']):.2f} ms")  # fmt: skip
    print(f"vector search top 100 identical to brute force: {found['top_100_as_brute_force']}")
    print(f"a turn's searches (BM25 and vector together, as prefetch runs them): p50 "
          f"{min(found['bm25_and_vector_p50_ms']):.2f}-{max(found['bm25_and_vector_p50_ms']):.2f}"
          f" ms; the vector search adds (paired p50) {min(found['turn_adds_ms']):.2f}-"
          f"{max(found['turn_adds_ms']):.2f} ms to BM25 alone")  # fmt: skip
    return _write(report, args.json)


def _write(report: dict[str, Any], path: str | None) -> int:
    if path:
        Path(path).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
