from __future__ import annotations

import pytest

from proxy.store.codec import page_search_tokens
from proxy.tokens import counter_for_model
from proxy.vm.attribution import speaker_of, stated_date, without_dates
from proxy.vm.ingest import Counters, ingest_messages

COUNTER = counter_for_model("gpt-4o")


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("[Session date: 8 May 2023, 1:56 pm] Hi Jon!", "8 May 2023, 1:56 pm"),
        ("It's March 13, 2022 and I've finally got a quiet evening.", "March 13, 2022"),
        ("[Session date: 2023/05/07 (Sun) 06:52] What are the steps?", "2023/05/07 (Sun) 06:52"),
        ("On 3rd June 2024 we met.", "3rd June 2024"),
        ("Happy Friday! Can you believe it's 8 May 2023 already? Hi!", "8 May 2023"),
        ("Hey Maya! Writing this on Tuesday, May 9, 2023, supposed to be working.",
         "May 9, 2023"),
        ("No date here at all.", ""),
        ("Thinking about it since 1990, a year with no month.", ""),
        ("MAY 9, 2023: the letters' case does not matter.", "MAY 9, 2023"),
        # A long s folds to "s" as IGNORECASE folds it: still a month.
        ("\u017fep 12, 2023 was the day.", "\u017fep 12, 2023"),
        ("1999-12-31 23:59 the last evening", "1999-12-31 23:59"),
        # A date later in a message is one it talks about, not when it was said.
        ("Can you remind me what we planned? The flight is on 12 May 2023.", ""),
    ],
)
def test_a_date_stated_at_the_start_of_a_message(text: str, date: str) -> None:
    assert stated_date(text) == date


def test_dates_are_taken_out_for_summaries() -> None:
    assert "2023" not in without_dates("Met on 8 May 2023 in Porto")


def test_the_speaker_is_the_messages_name_cleaned() -> None:
    assert speaker_of({"role": "user", "name": "Maya"}) == "Maya"
    assert speaker_of({"role": "user", "name": "[msg_1] <x>\n"}) == "msg_1 x"
    assert speaker_of({"role": "user"}) == speaker_of({"role": "user", "name": 7}) == ""


def test_pages_carry_who_and_when_and_search_finds_them_by_it() -> None:
    messages = [
        {"role": "system", "content": "A chat between Maya and Jon."},
        {"role": "user", "name": "Maya", "content": "[Session date: 8 May 2023] Hi Jon!"},
        {"role": "assistant", "name": "Jon", "content": "Hey! I started the cello."},
        {"role": "tool", "tool_call_id": "c", "content": '{"date": "2024-01-01"}'},
        {"role": "user", "name": "Maya", "content": "It's 9 May 2023 now. Lovely."},
        {"role": "assistant", "content": "No name on this one."},
    ]
    counters = Counters()
    pages = ingest_messages(messages, first_position=0, counters=counters, counter=COUNTER,
                            segment_turns=100, clock=lambda: 0.0).pages
    by_id = {p.page_id: p for p in pages}
    assert by_id["msg_0"].extra.get("said") is None
    assert by_id["msg_2"].extra["speaker"] == "Jon" and by_id["msg_2"].extra["said"] == "8 May 2023"
    # A tool result opening with a date is data, not when the conversation was.
    assert by_id["msg_3"].extra["said"] == "8 May 2023"
    assert by_id["msg_5"].extra["said"] == "9 May 2023" and "speaker" not in by_id["msg_5"].extra
    assert counters.said == "9 May 2023"
    assert Counters.from_dict(counters.to_dict()).said == "9 May 2023"
    # "What does Jon play?" finds Jon's own message by his name, and "May 2023" by its date.
    terms = page_search_tokens(by_id["msg_2"])
    assert {"jon", "may", "2023", "cello"} <= set(terms)
