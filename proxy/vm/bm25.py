"""Search tokens and an incremental BM25 index, pure (no I/O).

`search_tokens` is the one tokenizer every store uses, so a query finds the same pages in
memory, SQLite and PostgreSQL: lowercase unicode words, a light stop-word list, numbers kept,
and identifiers kept whole *and* split (`msg_12` -> `msg_12 msg 12`, `getUserName` ->
`getusername get user name`), so a model can search for an exact id or for its parts.

`BM25Index` is Okapi BM25 (k1=1.2, b=0.75) with Lucene's always-positive IDF,
`ln(1 + (N - n + 0.5) / (n + 0.5))`, computed over the documents currently in the index.
Postings are kept per term, so a query costs O(postings of its terms), never O(corpus).
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from proxy.vm.bounds import analysed

K1 = 1.2
B = 0.75
# Longer "words" are base64 blobs, hashes or minified code: noise for search, heavy to index.
MAX_TOKEN_CHARS = 64

_WORD = re.compile(r"\w+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

STOP_WORDS = frozenset(
    """a an and are as at be but by for from has have he her his i if in into is it its me
    my not of on or our she so than that the their them then there these they this to was
    we were what when which who will with would you your""".split()
)


def search_tokens(text: str) -> list[str]:
    """The search terms of `text`, in order, repeats kept (term frequency counts)."""
    tokens: list[str] = []
    for word in _WORD.findall(text):
        if len(word) > MAX_TOKEN_CHARS:
            continue
        lowered = word.lower()
        # The common case, a plain word or number (at most its first letter upper case),
        # has no parts: skip the splitting, which costs more than everything else here.
        if "_" not in word and (word.isdigit() or (word.isalpha() and word[1:] == lowered[1:])):
            if lowered not in STOP_WORDS:
                tokens.append(lowered)
            continue
        whole = lowered.strip("_")
        parts = _split_identifier(word)
        if whole and whole not in STOP_WORDS:
            tokens.append(whole)
        if len(parts) > 1:
            tokens.extend(part for part in parts if part not in STOP_WORDS)
    return tokens


def _split_identifier(word: str) -> list[str]:
    """`snake_case` -> [snake, case]; `getHTTPReply2` -> [get, http, reply, 2]."""
    parts: list[str] = []
    for chunk in word.split("_"):
        if not chunk:
            continue
        if chunk.isascii():
            parts.extend(piece.lower() for piece in _CAMEL.findall(chunk))
        else:
            parts.append(chunk.lower())
    return parts


def query_terms(query: str) -> list[str]:
    """The distinct terms of a query, first occurrence first (of its analysed part: a
    30 MB message is no slower a query than its first 64k characters)."""
    return list(dict.fromkeys(search_tokens(analysed(query))))


def bm25_idf(doc_count: int, doc_freq: int) -> float:
    return math.log(1.0 + (doc_count - doc_freq + 0.5) / (doc_freq + 0.5))


def bm25_term(tf: float, doc_len: float, avg_len: float, idf: float) -> float:
    norm = K1 * (1.0 - B + B * doc_len / avg_len) if avg_len > 0 else K1
    return idf * tf * (K1 + 1.0) / (tf + norm)


K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Doc:
    seq: int
    length: int
    terms: Counter[str]


class BM25Index(Generic[K]):
    """Documents keyed by `K`; `add` replaces a key already present."""

    def __init__(self) -> None:
        self._docs: dict[K, _Doc] = {}
        self._postings: dict[str, dict[K, int]] = {}
        self._total_len = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, key: object) -> bool:
        return key in self._docs

    def add(self, key: K, text: str) -> None:
        self.add_tokens(key, search_tokens(text))

    def add_tokens(self, key: K, tokens: Iterable[str]) -> None:
        if key in self._docs:
            self.remove(key)
        terms = Counter(tokens)
        length = sum(terms.values())
        self._seq += 1
        self._docs[key] = _Doc(self._seq, length, terms)
        self._total_len += length
        for term, tf in terms.items():
            self._postings.setdefault(term, {})[key] = tf

    def remove(self, key: K) -> bool:
        doc = self._docs.pop(key, None)
        if doc is None:
            return False
        self._total_len -= doc.length
        for term in doc.terms:
            posting = self._postings[term]
            del posting[key]
            if not posting:
                del self._postings[term]
        return True

    def search(
        self,
        query: str,
        limit: int = 5,
        filter: Callable[[K], bool] | None = None,
    ) -> list[tuple[K, float]]:
        """The best `limit` keys for `query`, best first; ties go to the earlier-added key.

        `filter` (called at most once per candidate) drops keys before they are scored;
        IDF and average length stay those of the whole index.

        Exact, but not every posting is read (MaxScore): terms are taken rarest first, and
        once the terms left could not lift a key that has no score yet above the current
        `limit`-th score even at their maximum (IDF x (k1 + 1)), they only add to keys
        already scored. A word on every page then costs O(candidates), not O(pages).
        """
        if limit <= 0 or not self._docs:
            return []
        doc_count = len(self._docs)
        avg_len = self._total_len / doc_count
        postings = [p for t in query_terms(query) if (p := self._postings.get(t))]
        postings.sort(key=len)
        idfs = [bm25_idf(doc_count, len(posting)) for posting in postings]
        bound_left = [sum(idfs[i:]) * (K1 + 1.0) for i in range(len(idfs))]
        docs = self._docs
        allowed: dict[K, bool] = {}
        scores: dict[K, float] = {}
        closed = False
        for posting, idf, bound in zip(postings, idfs, bound_left, strict=True):
            if not closed and len(scores) >= limit:
                closed = bound < heapq.nlargest(limit, scores.values())[-1]
            if closed:
                # Only keys already scored can still make the top `limit`.
                keys = (k for k in scores if k in posting) if len(scores) < len(posting) else (
                    k for k in posting if k in scores)
                for key in list(keys):
                    doc = docs[key]
                    scores[key] += bm25_term(posting[key], doc.length, avg_len, idf)
                continue
            for key, tf in posting.items():
                ok = allowed.get(key)
                if ok is None:
                    ok = allowed[key] = filter is None or filter(key)
                if ok:
                    doc_len = docs[key].length
                    scores[key] = scores.get(key, 0.0) + bm25_term(tf, doc_len, avg_len, idf)
        best = heapq.nsmallest(limit, scores.items(), key=lambda kv: (-kv[1], docs[kv[0]].seq))
        return [(key, score) for key, score in best]
