"""Embeddings (issue 14): how fast the local model embeds, and what vector search adds to a
memory-active turn.

    python benchmarks/embeddings.py [--messages 256] [--pages 10000] [--rounds 3]

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
        await index.search(path, "bench", queries[0], 100)  # the first loads the matrix
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
                "vector_p50_ms": vector_ms, "vector_cpu_ms_mean": vector_cpu_ms,
                "bm25_p50_ms": bm25_ms, "vector_over_bm25": ratios,
                "bm25_and_vector_p50_ms": both_ms,
                "turn_adds_ms": turn_adds_ms}  # fmt: skip
    finally:
        await store.close()


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
