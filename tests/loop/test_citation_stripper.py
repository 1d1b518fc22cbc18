from __future__ import annotations

import random

import pytest

from proxy.loop.citations import MAX_HOLD, CitationStripper, strip_citations


@pytest.mark.parametrize(
    ("text", "expected", "ids"),
    [
        ("I live in Lisbon [ref: msg_12].", "I live in Lisbon.", ["msg_12"]),
        ("Lisbon [ref:msg_12] is sunny", "Lisbon is sunny", ["msg_12"]),
        ("Lisbon [ref: msg_12, seg_3], then Porto", "Lisbon, then Porto", ["msg_12", "seg_3"]),
        ("A [ref: msg_1; claim_7] B", "A B", ["msg_1", "claim_7"]),
        ("[ref: msg_1] Starts here.", "Starts here.", ["msg_1"]),
        ("Line one.\n[ref: msg_2] Line two.", "Line one.\nLine two.", ["msg_2"]),
        ("End of line [ref: msg_2]\nNext", "End of line\nNext", ["msg_2"]),
        ("Twice [ref: msg_1] [REF: msg_1] done.", "Twice done.", ["msg_1"]),
        ("(see [ref: img_5])", "(see)", ["img_5"]),
        ("spaced  [ref: msg_1]  out", "spaced out", ["msg_1"]),
        ("odd [ref: msg_1] .", "odd.", ["msg_1"]),
        ("glued[ref: msg_1]word", "gluedword", ["msg_1"]),
        ("trailing [ref: msg_9]", "trailing", ["msg_9"]),
        ("[ref: msg_1]", "", ["msg_1"]),
    ],
)
def test_strip_citations(text: str, expected: str, ids: list[str]) -> None:
    assert strip_citations(text) == (expected, ids)


@pytest.mark.parametrize(
    "text",
    [
        "No citations here.",
        "a [link](http://x) and [1] and [ref] and [refs: msg_1] and [ref: not an id]",
        "[ref: msg_1\nbroken over a line]",
        "ends with an open bracket [",
        "ends with [ref: msg_1",
        "  leading and trailing spaces \t ",
        "array[i] = b[ref_count]",
    ],
)
def test_text_without_citations_is_unchanged(text: str) -> None:
    assert strip_citations(text) == (text, [])


SAMPLE = (
    "You told me you live in Lisbon [ref: msg_12]. Your sister moved to Porto "
    "[ref: msg_40, seg_3], and [x] is not a citation.\n[ref:claim_7] Also [refine] this "
    "[ref: msg_1] [ref: msg_2]!"
)


def feed_pieces(pieces: list[str]) -> tuple[str, list[str]]:
    stripper = CitationStripper()
    out = "".join(stripper.feed(p) for p in pieces) + stripper.flush()
    return out, stripper.ids


def test_sample_expected() -> None:
    assert strip_citations(SAMPLE) == (
        "You told me you live in Lisbon. Your sister moved to Porto, and [x] is not a "
        "citation.\nAlso [refine] this!",
        ["msg_12", "msg_40", "seg_3", "claim_7", "msg_1", "msg_2"],
    )


def test_every_single_split_point() -> None:
    whole = strip_citations(SAMPLE)
    for cut in range(len(SAMPLE) + 1):
        assert feed_pieces([SAMPLE[:cut], SAMPLE[cut:]]) == whole, cut


def test_every_pair_of_split_points_and_char_by_char() -> None:
    whole = strip_citations(SAMPLE)
    n = len(SAMPLE)
    for a in range(0, n + 1, 3):
        for b in range(a, n + 1, 5):
            assert feed_pieces([SAMPLE[:a], SAMPLE[a:b], SAMPLE[b:]]) == whole, (a, b)
    assert feed_pieces(list(SAMPLE)) == whole


def test_random_texts_split_randomly() -> None:
    rng = random.Random(7)
    atoms = ["word", " ", "  ", "\n", ".", ",", "[ref: msg_1]", "[ref:seg_22, msg_3]", "[",
             "[re", "[ref", "]", "[ref: msg_", "(", ")", "ref", "\t"]
    for _ in range(300):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 25)))
        pieces = []
        i = 0
        while i < len(text):
            n = rng.randint(1, 6)
            pieces.append(text[i : i + n])
            i += n
        assert feed_pieces(pieces) == strip_citations(text), text


def test_hold_is_released_when_it_cannot_be_a_citation() -> None:
    stripper = CitationStripper()
    assert stripper.feed("Look at [re") == "Look at"
    assert stripper.feed("d] things") == " [red] things"
    assert stripper.feed("[ref: msg_4") == ""
    assert stripper.feed("]") == ""
    assert stripper.ids == ["msg_4"]


def test_hold_is_bounded() -> None:
    stripper = CitationStripper()
    long_tail = "[ref: " + "msg_1, " * (MAX_HOLD // 7 + 1)
    assert stripper.feed(long_tail) == long_tail.rstrip()


def test_trailing_space_released_with_next_text() -> None:
    stripper = CitationStripper()
    assert stripper.feed("Hello ") == "Hello"
    assert stripper.feed("world") == " world"
    assert stripper.flush() == ""


@pytest.mark.parametrize("citations", [True, False])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[msg_12] Maya: I adopted a beagle.", "Maya: I adopted a beagle."),
        ("As [claim_17 claim] says, Tuesdays.", "As says, Tuesdays."),
        ("Seen in [msg_4 user] and [seg_2].", "Seen in and."),
        ("a [link](http://x), [msg] and [msg_x] stay",) * 2,
    ],
)
def test_page_labels_a_model_copies_are_stripped_in_every_mode(
    text: str, expected: str, citations: bool
) -> None:
    assert strip_citations(text, citations=citations) == (expected, [])


def test_without_citations_they_are_kept_and_labels_still_go() -> None:
    text = "Lisbon [ref: msg_12], see [msg_12] Maya: yes."
    assert strip_citations(text, citations=False) == ("Lisbon [ref: msg_12], see Maya: yes.", [])
    labelled = "Lisbon [msg_12] Maya: yes [msg_13 assistant]."
    whole = strip_citations(labelled, citations=False)
    for cut in range(len(labelled) + 1):
        stripper = CitationStripper(citations=False)
        out = stripper.feed(labelled[:cut]) + stripper.feed(labelled[cut:]) + stripper.flush()
        assert (out, stripper.ids) == whole, cut


CODE = "img_2 = 2\nprint(images[img_2], chunks[seg_1], f(x)[msg_3], rows[0][claim_4])\n"


@pytest.mark.parametrize("citations", [True, False])
def test_code_indexing_with_a_page_ids_shape_is_left_alone(citations: bool) -> None:
    assert strip_citations(CODE, citations=citations) == (CODE, [])
    # Streamed in every split, the bracket's indexed name in the piece before.
    for cut in range(1, len(CODE)):
        stripper = CitationStripper(citations=citations)
        out = stripper.feed(CODE[:cut]) + stripper.feed(CODE[cut:]) + stripper.flush()
        assert out == CODE, cut


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[msg_3] Jon: hi", "Jon: hi"),  # a line copied from the context
        ("He said so [msg_3].", "He said so."),
        ("(see [img_2])", "(see)"),
        ("[msg_12 user] hello", "hello"),  # older prompts' labels
        ("| a | [msg_3 ok] |", "| a | [msg_3 ok] |"),  # not a label: any word but those
        ("Both agree [msg_3][msg_5].", "Both agree."),  # labels in a row
        ("如上所述[msg_3]，就这样。", "如上所述，就这样。"),  # glued, as CJK text is
    ],
)
def test_labels_and_what_only_looks_like_one(text: str, expected: str) -> None:
    assert strip_citations(text, citations=False) == (expected, [])


def test_labels_after_a_citation_and_in_a_row_go_in_every_split() -> None:
    text = "We agreed [ref: msg_1][msg_2] and [msg_3][msg_4][msg_5]; 如上所述[msg_6]。"
    expected = "We agreed and; 如上所述。"
    assert strip_citations(text) == (expected, ["msg_1"])
    for cut in range(1, len(text)):
        stripper = CitationStripper()
        out = stripper.feed(text[:cut]) + stripper.feed(text[cut:]) + stripper.flush()
        assert out == expected, cut
