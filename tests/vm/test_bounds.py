"""A huge message is kept whole but analysed up to a bound (issue 13)."""

from __future__ import annotations

from proxy.store.codec import page_search_tokens
from proxy.tokens import counter_for_model
from proxy.vm.bounds import INDEX_CHARS
from proxy.vm.ingest import Counters, ingest_messages

COUNTER = counter_for_model("gpt-4o-mini")


def ingest_one(text: str):  # type: ignore[no-untyped-def]
    return ingest_messages(
        [{"role": "user", "content": text}],
        first_position=0,
        counters=Counters(),
        counter=COUNTER,
        segment_turns=8,
    )


def test_level_0_is_whole_and_the_rest_comes_from_the_analysed_part() -> None:
    head = "We decided to use Postgres for the store. "
    filler = "x" * (INDEX_CHARS + 10)
    tail = " We decided to deploy on Fridays, finally."
    text = head + filler + tail
    result = ingest_one(text)
    page = result.pages[0]
    assert page.text == text
    assert page.message == {"role": "user", "content": text}
    # What lies past the analysed part gives no claim and no search term.
    claims = [p.text for p in result.pages if p.page_id.startswith("claim_")]
    assert any("Postgres" in claim for claim in claims)
    assert not any("Fridays" in claim for claim in claims)
    terms = page_search_tokens(page)
    assert "postgres" in terms and "fridays" not in terms
    assert all(len(r) <= INDEX_CHARS + 200 for r in page.renderings[1:])
    # The count still covers the whole text.
    assert page.extra["msg_tokens"] > len(text) / 16
