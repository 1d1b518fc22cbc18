"""A summarizer's answer made into pages, and its daily cap (proxy.vm.summary_pages)."""

from __future__ import annotations

from proxy.store.codec import page_search_tokens
from proxy.tokens import counter_for_model
from proxy.vm.claims import claim_key
from proxy.vm.context import header_costs
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.pages import Page, PageKind
from proxy.vm.segments import build_summary
from proxy.vm.summary_pages import (
    CLAIM_IDS,
    SummaryBudget,
    claim_pages,
    is_model_written,
    reserve_claims,
    revised_abstract,
    revised_summary,
    utc_day,
)
from proxy.vm.summary_prompt import ModelSummary

COUNTER = counter_for_model("gpt-4o")
MODEL = "summarizer-model"


def _conversation() -> tuple[Page, dict[str, Page], Counters]:
    counters = Counters()
    messages: list[dict[str, object]] = []
    for turn in range(3):
        messages.append({"role": "user", "content": f"Turn {turn}: I live in Porto with Ana."})
        messages.append({"role": "assistant", "content": "Good to know about Porto. " * 20})
    messages.append({"role": "user", "content": "Another stretch."})
    result = ingest_messages(messages, first_position=0, counters=counters, counter=COUNTER,
                             segment_turns=3, clock=lambda: 0.0)
    pages = {p.page_id: p for p in result.pages}
    job = result.segment_jobs[0]
    return build_summary(job, [pages[i] for i in job.page_ids()], counter=COUNTER), pages, counters


def test_a_revised_summary_takes_the_model_text_and_keeps_what_search_matches() -> None:
    summary, _, _ = _conversation()
    answer = ModelSummary(summary="The user lives in Porto with Ana.",
                          points=("Lives in Porto", "Partner: Ana"))
    revised = revised_summary(summary, answer, MODEL, COUNTER)
    assert revised.renderings == (
        summary.renderings[0],
        "Summary of turns 1-3:\n- Lives in Porto\n- Partner: Ana",
        "Summary of turns 1-3: The user lives in Porto with Ana.",
        summary.renderings[3],
    )
    assert revised.tokens == tuple(COUNTER.text(r) for r in revised.renderings)
    assert page_search_tokens(revised) == page_search_tokens(summary)
    assert (revised.page_id, revised.hint, revised.covers) == (
        summary.page_id, summary.hint, summary.covers)
    assert revised.extra["summarizer"] == MODEL
    assert revised.extra["summarises"] == list(summary.covers)
    assert revised.extra["extractive"] == summary.renderings[2]
    assert revised.extra["header_tokens"] == header_costs(revised, COUNTER)["header_tokens"]
    assert is_model_written(revised) and not is_model_written(summary)


def test_without_points_level_one_is_the_summary() -> None:
    summary, _, _ = _conversation()
    revised = revised_summary(summary, ModelSummary(summary="Porto."), MODEL, COUNTER)
    assert revised.renderings[1] == "Summary of turns 1-3:\nPorto."


def test_a_revised_abstract_changes_level_two_only() -> None:
    _, pages, _ = _conversation()
    page = pages["msg_1"]
    revised = revised_abstract(page, "The assistant notes Porto.", MODEL, COUNTER)
    assert revised.renderings == (page.renderings[0], page.renderings[1],
                                  "The assistant notes Porto.", page.renderings[3])
    assert revised.tokens[2] == COUNTER.text("The assistant notes Porto.")
    assert revised.extra["summarises"] == ["msg_1"] and revised.message == page.message
    assert page_search_tokens(revised) == page_search_tokens(page)


def test_claims_take_the_ids_kept_for_them_and_leave_repeats_out() -> None:
    _, pages, counters = _conversation()
    before = counters.claims
    kept = reserve_claims(counters, 2)
    assert kept == [f"claim_{before}", f"claim_{before + 1}"] and counters.claims == before + 2
    already = "Turn 0: I live in Porto with Ana."
    assert claim_key(already) in counters.claim_keys  # the extractive rules made it
    answer = ModelSummary(summary="s", claims=(
        ("msg_0", already),
        ("msg_2", "The user's partner is called Ana."),
        ("msg_4", "the user's partner is called ana"),  # the same words again
        ("msg_4", "The user moved to Porto in 2021."),
        ("msg_4", "The user cycles to work."),  # no id left for it
    ))
    made = claim_pages(answer, pages, kept, counters.claim_keys, MODEL, COUNTER, now=7.0)
    assert [p.page_id for p in made] == kept
    first, second = made
    assert first.kind is PageKind.CLAIM
    assert first.renderings[0] == "The user's partner is called Ana."
    assert first.renderings[3] == f"{kept[0]}: {first.hint}"
    assert (first.anchor, first.turn, first.role) == (2, pages["msg_2"].turn, "user")
    assert first.covers == ("msg_2",) and first.created_at == 7.0
    assert first.extra["summarizer"] == MODEL and first.extra["summarises"] == ["msg_2"]
    assert second.text == "The user moved to Porto in 2021." and second.anchor == 4
    assert claim_pages(answer, pages, [], (), MODEL, COUNTER, now=0.0) == []
    elsewhere = {k: v for k, v in pages.items() if k != "msg_2"}  # a parent's page
    assert [p.text for p in claim_pages(
        answer, elsewhere, kept, counters.claim_keys, MODEL, COUNTER, now=0.0)] == [
        "the user's partner is called ana", "The user moved to Porto in 2021."]
    assert CLAIM_IDS == "claim_ids"


def test_the_budget_counts_what_was_spent() -> None:
    day = utc_day(1_700_000_000.0)
    assert day == "2023-11-14"
    spent = SummaryBudget(day).spent(700).spent(-5)
    assert spent == SummaryBudget(day, 700)
    assert utc_day(1_700_000_000.0 + 86_400) == "2023-11-15"
    assert spent.allows(300, 1000) and not spent.allows(301, 1000)
    assert not SummaryBudget(day).allows(1, 0)  # a cap of 0 allows nothing
