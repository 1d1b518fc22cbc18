from __future__ import annotations

import math
import random

import pytest

from proxy.vm.bm25 import BM25Index, query_terms, search_tokens


def test_tokens_lowercase_and_drop_stop_words() -> None:
    assert search_tokens("The Weather in LISBON is mild") == ["weather", "lisbon", "mild"]


def test_identifiers_kept_whole_and_split() -> None:
    assert search_tokens("see msg_12") == ["see", "msg_12", "msg", "12"]
    assert search_tokens("snake_case") == ["snake_case", "snake", "case"]
    assert search_tokens("getHTTPReply") == ["gethttpreply", "get", "http", "reply"]
    assert search_tokens("__init__") == ["init"]


def test_numbers_and_unicode_words() -> None:
    assert search_tokens("Port 8787, São Paulo, naïve_bayes") == [
        "port", "8787", "são", "paulo", "naïve_bayes", "naïve", "bayes",
    ]


def test_overlong_tokens_are_skipped() -> None:
    assert search_tokens("x" * 65 + " kept") == ["kept"]


def test_query_terms_are_distinct_in_order() -> None:
    assert query_terms("tea, TEA and coffee tea") == ["tea", "coffee"]


def _corpus() -> BM25Index[str]:
    index: BM25Index[str] = BM25Index()
    index.add("d1", "Lisbon weather")  # 2 tokens
    index.add("d2", "weather weather report")  # 3 tokens
    index.add("d3", "cats")  # 1 token; N = 3, avgdl = 2
    return index


def test_single_term_score_by_hand() -> None:
    # tf = 1 and dl = avgdl make the tf part exactly 1: the score is the IDF.
    # idf(lisbon) = ln(1 + (3 - 1 + 0.5) / (1 + 0.5)) = ln(8/3)
    assert _corpus().search("lisbon") == [("d1", pytest.approx(math.log(8 / 3)))]


def test_term_frequency_saturates_against_length() -> None:
    # idf(weather) = ln(1 + 1.5/2.5) = ln(1.6)
    # d2: tf 2, dl 3: 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3/2)) = 4.4 / 3.65
    idf = math.log(1.6)
    assert _corpus().search("weather") == [
        ("d2", pytest.approx(idf * 4.4 / 3.65)),
        ("d1", pytest.approx(idf)),
    ]


def test_rare_term_outweighs_common_term() -> None:
    hits = _corpus().search("lisbon weather")
    assert [key for key, _ in hits] == ["d1", "d2"]
    assert hits[0][1] == pytest.approx(math.log(8 / 3) + math.log(1.6))


def test_limit_and_no_match() -> None:
    index = _corpus()
    assert [key for key, _ in index.search("weather", limit=1)] == ["d2"]
    assert index.search("weather", limit=0) == []
    assert index.search("dogs") == []
    assert BM25Index[str]().search("anything") == []


def test_filter_sees_only_candidates_and_keeps_corpus_statistics() -> None:
    index = _corpus()
    seen: list[str] = []

    def allow(key: str) -> bool:
        seen.append(key)
        return key != "d2"

    assert index.search("weather", filter=allow) == [("d1", pytest.approx(math.log(1.6)))]
    assert sorted(seen) == ["d1", "d2"]  # d3 holds no query term: never looked at


def test_remove_and_replace_update_statistics() -> None:
    index = _corpus()
    assert index.remove("d3") and not index.remove("d3")
    assert len(index) == 2 and "d3" not in index
    # N = 2, avgdl = 2.5; idf(lisbon) = ln(1 + 1.5/1.5) = ln 2; d1: 2.2 / (1 + 1.2 * 0.85)
    assert index.search("lisbon") == [("d1", pytest.approx(math.log(2) * 2.2 / 2.02))]
    index.add("d1", "cats only")
    assert index.search("lisbon") == []
    assert [key for key, _ in index.search("cats")] == ["d1"]


def test_ties_go_to_the_earlier_document() -> None:
    index: BM25Index[tuple[str, int]] = BM25Index()
    for n in (3, 1, 2):
        index.add(("c", n), "same words here")
    assert [key for key, _ in index.search("words")] == [("c", 3), ("c", 1), ("c", 2)]


def _brute_force(
    docs: dict[int, list[str]], query: str, limit: int, allow: set[int]
) -> list[tuple[int, float]]:
    """Every document scored with every query term: what the pruned search must equal."""
    n = len(docs)
    avg = sum(len(tokens) for tokens in docs.values()) / n
    terms = query_terms(query)
    df = {term: sum(1 for tokens in docs.values() if term in tokens) for term in terms}
    scored = []
    for key, tokens in docs.items():
        score = 0.0
        for term in terms:
            tf = tokens.count(term)
            if tf:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(tokens) / avg))
        if score > 0 and key in allow:
            scored.append((key, score))
    scored.sort(key=lambda kv: (-kv[1], kv[0]))
    return scored[:limit]


def test_pruned_search_equals_brute_force() -> None:
    rng = random.Random(3)
    # Zipf-like vocabulary of plain words (no digits: those would be split into parts).
    vocabulary = ["z" + chr(97 + n // 26) + chr(97 + n % 26) for n in range(300)]
    weights = [1 / (rank + 1) for rank in range(300)]
    docs = {key: rng.choices(vocabulary, weights, k=rng.randint(3, 40)) for key in range(400)}
    index: BM25Index[int] = BM25Index()
    for key, tokens in docs.items():
        index.add(key, " ".join(tokens))
    allow = {key for key in docs if key % 3}
    for _ in range(200):
        query = " ".join(rng.choices(vocabulary, weights, k=rng.randint(1, 4)))
        limit = rng.choice([1, 3, 5, 10])
        for allowed in (set(docs), allow):
            got = index.search(query, limit, filter=allowed.__contains__)
            want = _brute_force(docs, query, limit, allowed)
            assert [k for k, _ in got] == [k for k, _ in want], query
            assert [s for _, s in got] == pytest.approx([s for _, s in want])
