from __future__ import annotations

import pytest

from proxy.vm.fusion import RRF_K, beside, fuse_rankings


def test_a_page_both_rankers_hold_beats_one_only_one_ranks_first() -> None:
    fused = fuse_rankings([["a", "b", "c"], ["x", "b", "y"]])
    assert [item for item, _ in fused][:1] == ["b"]
    assert fused[0][1] == pytest.approx(2 / (RRF_K + 1))


def test_scores_are_reciprocal_ranks_summed() -> None:
    fused = dict(fuse_rankings([["a", "b"], ["b"]], k=10))
    assert fused == {"a": pytest.approx(1 / 10), "b": pytest.approx(1 / 11 + 1 / 10)}


def test_ties_keep_the_first_ranking_first() -> None:
    fused = fuse_rankings([["a", "b"], ["x", "y"]])
    assert [item for item, _ in fused] == ["a", "x", "b", "y"]


def test_weights_and_limit() -> None:
    fused = fuse_rankings([["a"], ["x"]], weights=[1.0, 2.0], limit=1)
    assert [item for item, _ in fused] == ["x"]


def test_an_id_repeated_in_one_ranking_counts_once_at_its_best_rank() -> None:
    assert dict(fuse_rankings([["a", "a", "b"]]))["a"] == pytest.approx(1 / RRF_K)


def test_nothing_to_fuse() -> None:
    assert fuse_rankings([[], []]) == []


def test_beside_ranks_each_items_neighbours_in_the_items_order_once() -> None:
    around = {"a": ["a-", "a+"], "b": ["b-", "a+"], "c": []}
    assert beside(["b", "c", "a"], around.__getitem__) == ["b-", "a+", "a-"]
    assert beside([], around.__getitem__) == []


def test_a_neighbour_of_the_best_hits_outranks_a_lone_late_hit() -> None:
    words = ["q", *(f"x{n}" for n in range(10)), "late"]
    meaning = ["m1", "m2"]
    fused = [item for item, _ in fuse_rankings(
        [words, meaning, beside(words, lambda item: [f"{item}+"])], weights=[1.0, 1.0, 0.5],
        k=10)]  # fmt: skip
    assert fused.index("q+") < fused.index("late")
    assert fused.index("m1") < fused.index("q+")
