"""`python -m benchmarks.recall.chat.lab`: retrieval designs measured without the proxy.

Each variant ranks a conversation's messages for a question, packs the best units into the
same room the baselines get (the budget less the reply, the system prompt and the
question), renders them and judges the evidence as the harness does. It isolates what the
memory's units, indexed text and ranking are worth before the proxy is changed to use
them; the proxy's own figures come from `python -m benchmarks.recall --dataset ...`.

Variants are named by their parts, joined with `+`:
- index text: `plain` (the message), `who` (the speaker's name first), `when` (the
  session date carried to every message of the session, indexed and rendered);
- units: `next` (a hit brings the message after it), `around` (before and after);
- ranking: `bm25` (default), `dense` (all-MiniLM-L6-v2 int8 over ONNX, from
  ../shared/models), `fused` (reciprocal-rank fusion of both).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.recall.chat import longmemeval
from benchmarks.recall.chat.packing import Corpus
from benchmarks.recall.chat.types import Chat, judge
from benchmarks.recall.counting import count_text
from benchmarks.recall.dialogue.generate import generate_dialogues
from proxy.vm.bm25 import BM25Index, search_tokens


def _stem(word: str) -> str:
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: len(word) - len(suffix)] + keep
            if keep == "" and len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            break
    return word


def _stemmed(text: str) -> list[str]:
    return [_stem(t) for t in search_tokens(text)]

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
MODEL_DIR = SHARED / "models" / "all-MiniLM-L6-v2-int8"
CACHE = Path("/tmp/vm-proxy-lab-vectors")
RRF_K = 60
_DATE = re.compile(
    r"^\[Session date: ([^\]]+)\]|^It's ([A-Z][a-z]+ \d{1,2}, \d{4})|(\d{1,2} [A-Z][a-z]+ \d{4})"
)


@dataclass
class Prepared:
    chat: Chat
    corpus: Corpus
    speakers: list[str]
    dates: list[str]


def prepare(chat: Chat) -> Prepared:
    speakers, dates, current = [], [], ""
    for position, message in enumerate(chat.messages):
        speakers.append(str(message.get("name") or message.get("role") or ""))
        text = str(message.get("content") or "")
        match = _DATE.search(text[:120]) if position else None
        if match:
            current = next(g for g in match.groups() if g)
        dates.append(current)
    return Prepared(chat, Corpus(chat.messages), speakers, dates)


def rendered(p: Prepared, position: int, who: bool, when: bool) -> str:
    """A message as indexed (and, without `when`, as shown)."""
    text = str(p.chat.messages[position].get("content") or "")
    head = []
    if who:
        head.append(p.speakers[position])
    if when and p.dates[position]:
        head.append(f"({p.dates[position]})")
    return (" ".join(head) + ": " + text) if head else text


def shown(p: Prepared, chosen: list[int], who: bool, when: bool) -> str:
    """Chosen messages in order, the session date once where a session's run starts."""
    lines, date = [], None
    for position in chosen:
        if when and p.dates[position] != date:
            date = p.dates[position]
            lines.append(f"-- {date} --")
        lines.append(rendered(p, position, who, False))
    return "\n".join(lines)


class Dense:
    """The proxy's own ONNX embedder (proxy.embeddings.local) over the shared model."""

    def __init__(self) -> None:
        import numpy as np

        from proxy.embeddings.local import OnnxEmbedder

        self.np = np
        self.embedder = OnnxEmbedder.load(str(MODEL_DIR))

    def embed(self, texts: Sequence[str]) -> Any:
        if not texts:
            return self.np.zeros((0, 384))
        return self.embedder.embed_now(list(texts))

    def cached(self, key: str, texts: Sequence[str]) -> Any:
        CACHE.mkdir(exist_ok=True)
        digest = hashlib.sha1(("\0".join(texts) + key).encode()).hexdigest()[:16]
        path = CACHE / f"{digest}.npy"
        if path.exists():
            return self.np.load(path)
        vectors = self.embed(texts)
        self.np.save(path, vectors)
        return vectors


def ranking(p: Prepared, question: str, parts: set[str], dense: Dense | None,
            indexes: dict[Any, Any]) -> list[int]:  # fmt: skip
    who, when = "who" in parts or "whoidx" in parts, "when" in parts
    key = (id(p), who, when)
    positions = list(range(1, len(p.chat.messages)))
    ranked_lists: list[list[int]] = []
    if "dense" not in parts:
        stem = "stem" in parts
        key = (*key, stem)
        index = indexes.get(key)
        if index is None:
            index = indexes[key] = BM25Index()
            for position in positions:
                text = rendered(p, position, who, when)
                index.add_tokens(position, _stemmed(text) if stem else search_tokens(text))
        query = " ".join(_stemmed(question)) if stem else question
        ranked_lists.append([pos for pos, _ in index.search(query, len(index))])
    if "dense" in parts or "fused" in parts:
        assert dense is not None
        vkey = ("v", *key)
        vectors = indexes.get(vkey)
        if vectors is None:
            texts = [rendered(p, pos, who, when) for pos in positions]
            vectors = indexes[vkey] = dense.cached(p.chat.name, texts)
        scores = vectors @ dense.embed([question])[0]
        order = dense.np.argsort(-scores)
        ranked_lists.append([positions[i] for i in order])
    if len(ranked_lists) == 1:
        return ranked_lists[0]
    fused: dict[int, float] = defaultdict(float)
    for ranked in ranked_lists:
        for rank, position in enumerate(ranked):
            fused[position] += 1.0 / (RRF_K + rank)
    return sorted(fused, key=lambda pos: -fused[pos])


def pack(p: Prepared, order: list[int], room: int, parts: set[str]) -> list[int]:
    who = "who" in parts
    span = (0, 1) if "next" in parts else (-1, 1) if "around" in parts else (0, 0)
    chosen: set[int] = set()
    costs: dict[int, int] = {}

    def cost(position: int) -> int:
        if position not in costs:
            costs[position] = count_text(rendered(p, position, who, False)) + 1
        return costs[position]

    last = len(p.chat.messages) - 1

    def asks(q: int) -> bool:
        return 1 <= q <= last and "?" in str(p.chat.messages[q].get("content") or "")

    if "lag" in parts:
        # neighbours join the ranking a few places after their hit
        delayed: list[int] = []
        lag = 8
        for rank, position in enumerate(order):
            delayed.append(position)
            if rank >= lag:
                src = order[rank - lag]
                delayed += [src + 1, src - 1]
        order = delayed
    for position in order:
        if "qa" in parts:
            extent = [position]
            if asks(position):
                extent.append(position + 1)
            if asks(position - 1):
                extent.insert(0, position - 1)
        else:
            extent = list(range(position + span[0], position + span[1] + 1))
        unit = [q for q in extent if 1 <= q <= last and q not in chosen]
        total = sum(cost(q) for q in unit)
        if "when" in parts:
            total += sum(8 for q in unit if not any(p.dates[c] == p.dates[q] for c in chosen))
        if unit and total <= room:
            chosen.update(unit)
            room -= total
    return sorted(chosen)


def run(chats: list[Chat], variants: list[str], budget: int, reply: int) -> None:
    dense = Dense() if any("dense" in v or "fused" in v for v in variants) else None
    prepared = [prepare(c) for c in chats]
    indexes: dict[Any, Any] = {}
    print(f"{'variant':32} {'dataset':12} recall  +date  by kind")
    for variant in variants:
        parts = set(variant.split("+"))
        by: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
        dated: dict[str, list[bool]] = defaultdict(list)
        for p in prepared:
            for q in p.chat.questions:
                room = p.corpus.room(q.question, budget, reply)
                order = ranking(p, q.question, parts, dense, indexes)
                chosen = pack(p, order, room, parts)
                visible = shown(p, chosen, "who" in parts, "when" in parts)
                verdict = judge(q, visible)
                by[p.chat.dataset][q.kind].append(verdict.recalled)
                by[p.chat.dataset]["all"].append(verdict.recalled)
                dated[p.chat.dataset].append(verdict.with_date)
        for dataset, kinds in by.items():
            overall = sum(kinds["all"]) / len(kinds["all"])
            date_share = sum(dated[dataset]) / len(dated[dataset])
            detail = " ".join(
                f"{k}={sum(v) / len(v):.0%}" for k, v in sorted(kinds.items()) if k != "all"
            )
            print(f"{variant:32} {dataset:12} {overall:6.1%} {date_share:6.1%}  {detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recall.chat.lab")
    parser.add_argument("--variants", default="plain,plain+next,who,who+next,who+when+next")
    parser.add_argument("--budget", type=int, default=4096)
    parser.add_argument("--reply-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dataset", default="dialogue,longmemeval")
    args = parser.parse_args(argv)
    chats: list[Chat] = []
    if "dialogue" in args.dataset:
        chats += generate_dialogues(args.seed)
    if "longmemeval" in args.dataset and longmemeval.available() is None:
        chats += longmemeval.load()
    run(chats, args.variants.split(","), args.budget, args.reply_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())

