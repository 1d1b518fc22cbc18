from __future__ import annotations

from proxy.tokens import counter_for_model
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page
from proxy.vm.prefetch import (
    around_ids,
    gather_candidates,
    neighbour_ids,
    pinned_start,
    plan_prefetch,
    search_limit,
    search_query,
)
from proxy.vm.segments import build_summary, record_summary
from proxy.vm.working_set import NEIGHBOUR
from tests.vm.conversations import long_conversation

COUNTER = counter_for_model("gpt-4o")


def memory(turns: int = 20) -> tuple[dict[str, Page], Counters]:
    counters = Counters()
    result = ingest_messages(long_conversation(turns), first_position=0, counters=counters,
                             counter=COUNTER, segment_turns=4, clock=lambda: 0.0)
    pages = {p.page_id: p for p in result.pages}
    for job in result.segment_jobs:
        seg = build_summary(job, [pages[i] for i in job.page_ids()], counter=COUNTER)
        pages[seg.page_id] = seg
        record_summary(counters, seg)
    return pages, counters


def test_search_query_keeps_the_most_selective_terms_in_order() -> None:
    text = "alpha beta gamma delta epsilon zeta"
    assert search_query(text, 10) == text
    assert search_query(text, 2) == "alpha epsilon"  # the longest, ties to the first
    freq = {"alpha": 5, "beta": 900, "gamma": 1, "delta": 40, "epsilon": 700, "zeta": 2}
    assert search_query(text, 3, freq.__getitem__) == "alpha gamma zeta"
    assert search_query(text, 10, freq.__getitem__, max_df=100) == "alpha gamma delta zeta"
    # Too few rare terms: the least common of the common ones fill up to three.
    assert search_query("beta epsilon gamma", 10, freq.__getitem__, max_df=10) == (
        "beta epsilon gamma")
    assert search_query("the and of", 10) == ""


def test_plan_is_bounded_and_names_what_to_load() -> None:
    pages, counters = memory(30)
    table = PageTable()
    table.note_faulted("msg_9", 0, turn=29)
    plan = plan_prefetch(counters, table, turn=30, user_text="What is my cat called?",
                         pin_last_turns=2)
    assert plan.pinned_from == counters.user_positions[-2] == 59
    assert plan.recent == (47, 59)
    assert plan.summary_ids[-1] == "seg_6" and len(plan.summary_ids) <= 8
    assert plan.hot_ids == ("msg_9",)
    assert "cat" in plan.query.split()
    ids = plan.page_ids()
    assert len(ids) == len(set(ids)) and "msg_9" in ids  # the recent range is read whole


def test_pinned_start_never_enters_the_system_prompt() -> None:
    counters = Counters(preamble=2, user_positions=[])
    assert pinned_start(counters, 2) == 2
    counters.user_positions = [2, 4, 6]
    assert pinned_start(counters, 2) == 4 and pinned_start(counters, 9) == 2
    assert pinned_start(counters, 0) == 6


def test_candidates_are_deduplicated_normalised_and_skip_the_tail() -> None:
    pages, counters = memory(30)
    plan = plan_prefetch(counters, PageTable(), turn=30, user_text="sourdough starter",
                         pin_last_turns=2)
    hits = [(pages["msg_60"], 50.0), (pages["msg_12"], 8.0), (pages["seg_1"], 4.0)]
    near = around_ids([p for p, _ in hits], plan, counters.preamble)
    assert near == ["msg_11", "msg_12", "msg_13"]  # msg_60 is in the pinned tail
    loaded = [pages[i] for i in [*plan.page_ids(), *near] if i in pages]
    found = gather_candidates(hits=hits, pages=loaded, plan=plan, exclude=["claim_0"])
    by_id = {c.page.page_id: c for c in found}
    assert "msg_60" not in by_id  # in the pinned tail: it goes verbatim anyway
    assert by_id["msg_12"].relevance == 1.0 and by_id["seg_1"].relevance == 0.5
    assert by_id["msg_11"].reason == by_id["msg_13"].reason == NEIGHBOUR
    assert by_id[plan.summary_ids[-1]].reason == "summary"
    assert "claim_0" not in by_id and len(found) == len(by_id)
    assert all(c.reason for c in found)


def test_a_claim_hit_lends_its_relevance_to_its_source_message() -> None:
    pages, counters = memory(30)
    plan = plan_prefetch(counters, PageTable(), turn=30, user_text="advisory locks",
                         pin_last_turns=2)
    claim = next(p for p in pages.values() if p.page_id.startswith("claim_"))
    (source,) = claim.covers
    near = around_ids([claim], plan, counters.preamble)
    assert source in near
    found = gather_candidates(hits=[(claim, 3.0)], pages=[pages[i] for i in near], plan=plan)
    by_id = {c.page.page_id: c for c in found}
    assert claim.page_id not in by_id and by_id[source].relevance == 1.0


def test_the_search_brings_enough_hits_to_fill_the_budget() -> None:
    assert search_limit(4096, 30.0) == 69  # short chat turns: many hits
    assert search_limit(4096, 900.0) == 20  # long answers: the floor
    assert search_limit(100_000, 30.0) == 100  # bounded


def test_neighbour_ids_are_the_messages_beside_a_message_or_a_claims_source() -> None:
    pages, _ = memory(30)
    assert neighbour_ids(pages["msg_12"]) == ["msg_11", "msg_13"]
    assert neighbour_ids(pages["msg_0"]) == ["msg_1"]  # nothing before the first message
    claim = next(p for p in pages.values() if p.page_id.startswith("claim_"))
    (source,) = claim.covers
    anchor = int(source.removeprefix("msg_"))
    assert neighbour_ids(claim) == [f"msg_{anchor - 1}", f"msg_{anchor + 1}"]
    assert neighbour_ids(pages["seg_1"]) == []


def test_around_ids_leaves_message_neighbours_to_a_search_that_ranked_them() -> None:
    pages, counters = memory(30)
    plan = plan_prefetch(counters, PageTable(), turn=30, user_text="advisory locks",
                         pin_last_turns=2)
    claim = next(p for p in pages.values() if p.page_id.startswith("claim_"))
    (source,) = claim.covers
    hits = [pages["msg_12"], claim]
    assert "msg_13" in around_ids(hits, plan, counters.preamble)
    ranked = around_ids(hits, plan, counters.preamble, neighbours=False)
    assert "msg_13" not in ranked and "msg_11" not in ranked
    assert source in ranked  # a claim still brings the message it was drawn from


def test_around_ids_after_only_brings_the_turn_after_a_message_hit() -> None:
    pages, counters = memory(30)
    plan = plan_prefetch(counters, PageTable(), turn=30, user_text="advisory locks",
                         pin_last_turns=2)
    claim = next(p for p in pages.values() if p.page_id.startswith("claim_"))
    (source,) = claim.covers
    assert around_ids([pages["msg_12"]], plan, counters.preamble, after_only=True) == [
        "msg_12", "msg_13"
    ]
    # A claim still brings its source message with the turns on both sides.
    near = around_ids([claim], plan, counters.preamble, after_only=True)
    assert source in near and near == around_ids([claim], plan, counters.preamble)
