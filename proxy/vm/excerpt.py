"""The passages of a page that match a query: what a long page shows in the context, and
what a search result says about a hit.

A long message (an article, a detailed answer) rarely matters whole to one question; the
sentences that share its words do, with a little of what surrounds them. `excerpt` takes
sentences best first (each query term weighted by how rare it is in this page: the words
a whole article shares with the question say where the article is, not which of its
sentences answers), as many as fit a word count, then grows them with the sentence after
(what a statement goes on to say) and before; it shows them in their order, "…" marking
what is left out. A page that shares no term with the query gives its opening sentences.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache

from proxy.vm.bm25 import search_tokens

ELLIPSIS = "…"
_SENTENCE = re.compile(r"(?<=[.!?:;])\s+|\n+")
_SPACE = re.compile(r"[ \t]+")
_EDGE = "\"'()[]{}.,;:!?*_…-"
# Texts whose parsing is kept (a text's words and sentences; see `_parsed`).
PARSED_TEXTS = 1024


def excerpt(text: str, terms: Collection[str], max_words: int) -> str:
    """At most about `max_words` words of `text`, the parts that match `terms` (search
    terms, as `search_tokens` makes them); the text itself when it is short enough."""
    words, sentences = _parsed(text)
    if len(words) <= max_words:
        return text
    if len(words) <= 2 * max_words:
        # A short text: the words around where it first matches say it (one pass, no
        # sentence to weigh against another).
        return _around(words, terms, max_words)
    if not sentences:
        return " ".join(words[:max_words]) + f" {ELLIPSIS}"
    sizes = [s.size for s in sentences]
    scores = _scores(sentences, terms)
    ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    if scores[ranked[0]] <= 0:
        ranked = [0]
    chosen: set[int] = set()
    used = 0
    for index in ranked:
        if scores[index] <= 0 and chosen:
            break
        if used + sizes[index] <= max_words:
            chosen.add(index)
            used += sizes[index]
    if not chosen:  # the best sentence alone is longer than the whole allowance
        return _around(sentences[ranked[0]].words, terms, max_words)
    used = _grow(chosen, sizes, used, max_words)
    return _render([s.text for s in sentences], sorted(chosen))


@dataclass(frozen=True, slots=True)
class _Sentence:
    text: str
    words: tuple[str, ...]
    size: int
    terms: frozenset[str]


@lru_cache(maxsize=PARSED_TEXTS)
def _parsed(text: str) -> tuple[tuple[str, ...], tuple[_Sentence, ...]]:
    """A text's words and sentences with their search terms: the same for every query, and
    a page's text recurs turn after turn (in the block, in its hints, in search results)."""
    words = tuple(text.split())
    sentences: list[_Sentence] = []
    for raw in _SENTENCE.split(text):
        sentence = _SPACE.sub(" ", raw).strip()
        if sentence:
            split = tuple(sentence.split())
            sentences.append(
                _Sentence(sentence, split, len(split), frozenset(search_tokens(sentence)))
            )
    return words, tuple(sentences)


def _grow(chosen: set[int], sizes: Sequence[int], used: int, max_words: int) -> int:
    """Add the sentences around the chosen ones while they fit: first the one after each
    (best first), then the one before."""
    for step in (1, -1):
        for index in sorted(chosen):
            near = index + step
            if 0 <= near < len(sizes) and near not in chosen and used + sizes[near] <= max_words:
                chosen.add(near)
                used += sizes[near]
    return used


def _render(sentences: Sequence[str], chosen: Sequence[int]) -> str:
    parts: list[str] = []
    previous = -1
    for index in chosen:
        if index != previous + 1:
            parts.append(ELLIPSIS)
        parts.append(sentences[index])
        previous = index
    if previous < len(sentences) - 1:
        parts.append(ELLIPSIS)
    return " ".join(parts)


def _scores(sentences: Sequence[_Sentence], terms: Collection[str]) -> list[float]:
    wanted = terms if isinstance(terms, (set, frozenset)) else set(terms)
    found = [s.terms & wanted for s in sentences]
    count = len(sentences)
    spread: dict[str, int] = {}
    for terms_in in found:
        for term in terms_in:
            spread[term] = spread.get(term, 0) + 1
    weight = {t: math.log(1.0 + count / n) for t, n in spread.items()}
    return [sum(weight[t] for t in terms_in) for terms_in in found]


def _around(words: Sequence[str], terms: Collection[str], max_words: int) -> str:
    """The `max_words` of these words (one long sentence, or a short text) around the first
    that matches."""
    wanted = set(terms)
    # A word's own search terms are its letters and digits, lower case (search_tokens,
    # without its identifier splitting: close enough to find where a text matches).
    first = next(
        (i for i, w in enumerate(words) if w.strip(_EDGE).lower() in wanted), 0
    )
    start = max(0, min(first - max_words // 3, len(words) - max_words))
    clipped = " ".join(words[start : start + max_words])
    head = f"{ELLIPSIS} " if start > 0 else ""
    return head + clipped + (f" {ELLIPSIS}" if start + max_words < len(words) else "")
