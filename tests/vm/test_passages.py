from __future__ import annotations

from proxy.vm.passages import MAX_PASSAGES, page_of, passage_id, passages


def test_short_sentences_join_the_next_and_a_short_tail_joins_the_last() -> None:
    text = "Hi. I have started to play the accordion lately. Fun! It rained all week long here. Ok."
    assert passages(text) == [
        "Hi. I have started to play the accordion lately.",
        "Fun! It rained all week long here. Ok.",
    ]


def test_a_short_message_is_one_passage_and_no_text_none() -> None:
    assert passages("Ghent!") == ["Ghent!"]
    assert passages("  \n ") == []


def test_a_long_message_is_cut_into_at_most_max_passages() -> None:
    text = " ".join(f"Sentence number {n} has six words." for n in range(40))
    found = passages(text)
    assert len(found) <= MAX_PASSAGES
    assert " ".join(found) == text


def test_row_ids_name_their_page() -> None:
    assert passage_id("msg_4", 0) == "msg_4"
    assert passage_id("msg_4", 2) == "msg_4#2"
    assert page_of("msg_4#2") == page_of("msg_4") == "msg_4"
