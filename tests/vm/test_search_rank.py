from __future__ import annotations

from proxy.tokens import counter_for_model
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.pages import Page
from proxy.vm.search_rank import refine_hits
from tests.vm.helpers import clock


def pages_of(*user_texts: str) -> dict[str, Page]:
    """Ingest one user message per text (each answered with "Noted."), every page by id."""
    messages: list[dict[str, str]] = [{"role": "system", "content": "Be brief."}]
    for text in user_texts:
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": "Noted."}]
    result = ingest_messages(
        messages, first_position=0, counters=Counters(),
        counter=counter_for_model("gpt-4o"), segment_turns=1000, clock=clock,
    )
    return {page.page_id: page for page in result.pages}


def test_a_statement_outranks_a_mention_bm25_put_first() -> None:
    pages = pages_of(
        "I tried to remember the storage room door code today and blanked for a second.",
        "Writing this down: the storage room door code is 38401.",
    )
    mention, statement = pages["msg_1"], pages["msg_3"]
    ranked = refine_hits("What is the storage room door code?",
                         [(mention, 10.0), (statement, 9.0)], 5)
    assert [hit.page.page_id for hit in ranked][0] == "msg_3"
    assert ranked[0].superseded_by is None


def test_the_newest_statement_of_a_subject_goes_first_and_marks_the_older() -> None:
    pages = pages_of(
        "For the record, the lab door code is 12238.",
        "Some small talk about the weather.",
        "Small correction, the lab door code is now 51297.",
    )
    claims = sorted((p for p in pages.values() if p.kind.value == "claim"),
                    key=lambda p: p.anchor)
    old_claim, new_claim = claims
    hits = [(pages["msg_1"], 12.0), (old_claim, 12.0), (new_claim, 11.0), (pages["msg_5"], 10.0)]
    ranked = refine_hits("What is the lab door code?", hits, 5)
    # Each claim took its source message's slot: two results, the newer first.
    assert [h.page.page_id for h in ranked] == [new_claim.page_id, old_claim.page_id]
    assert ranked[0].source == "msg_5" and ranked[1].source == "msg_1"
    assert ranked[0].superseded_by is None
    assert ranked[1].superseded_by == new_claim.page_id


def test_restating_the_same_value_supersedes_nothing() -> None:
    pages = pages_of("My dentist is Dr Lindqvist.", "Again: my dentist is Dr Lindqvist.")
    ranked = refine_hits("Who is my dentist?", [(pages["msg_1"], 5.0), (pages["msg_3"], 4.0)], 5)
    assert [h.superseded_by for h in ranked] == [None, None]


def test_statements_about_other_subjects_are_not_grouped_or_boosted() -> None:
    pages = pages_of("The lab door code is 12238.", "The greenhouse door code is 777.")
    ranked = refine_hits("What is the lab door code?",
                         [(pages["msg_3"], 10.0), (pages["msg_1"], 9.0)], 5)
    assert ranked[0].page.page_id == "msg_1"
    assert all(h.superseded_by is None for h in ranked)


def test_limit_and_order_of_plain_hits_are_kept() -> None:
    pages = pages_of("alpha one", "alpha two", "alpha three")
    hits = [(pages["msg_5"], 3.0), (pages["msg_1"], 2.0), (pages["msg_3"], 1.0)]
    ranked = refine_hits("alpha", hits, 2)
    assert [h.page.page_id for h in ranked] == ["msg_5", "msg_1"]
    assert [h.score for h in ranked] == [3.0, 2.0]
