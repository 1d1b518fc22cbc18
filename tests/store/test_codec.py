"""A message page's text is stored once (issue 13: a 2.7 MB message took 5.4 MB of body)."""

from __future__ import annotations

from proxy.store.codec import HEAVY_WRITE_CHARS, decode_page, encode_page, is_heavy
from proxy.tokens import counter_for_model
from proxy.vm.ingest import Counters, ingest_messages


def page_of(message: dict) -> object:  # type: ignore[type-arg]
    result = ingest_messages(
        [message], first_position=0, counters=Counters(),
        counter=counter_for_model("gpt-4o-mini"), segment_turns=8,
    )
    return result.pages[0]


def test_a_message_text_is_stored_once_and_read_back_whole() -> None:
    text = "We decided to use Postgres for the store, as the team agreed. " * 20_000
    page = page_of({"role": "user", "content": text})
    body = encode_page(page)  # type: ignore[arg-type]
    assert len(body) < len(text) * 1.25
    assert decode_page(body) == page


def test_pages_whose_text_is_not_their_content_keep_it() -> None:
    parts = [{"type": "text", "text": "look at this"},
             {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    page = page_of({"role": "user", "content": parts})
    assert decode_page(encode_page(page)) == page  # type: ignore[arg-type]


def test_a_body_read_again_is_not_decoded_again() -> None:
    first = encode_page(page_of({"role": "user", "content": "the taxes are due in April"}))  # type: ignore[arg-type]
    other = encode_page(page_of({"role": "user", "content": "the taxes are due in June"}))  # type: ignore[arg-type]
    page = decode_page(first)
    # A body read back from a row is a new bytes object with the same content.
    again = decode_page(bytes(bytearray(first)))
    assert again is page
    assert decode_page(other) is not page and decode_page(other).text.endswith("June")
    assert decode_page(first.decode()) == page


def test_pages_are_heavy_by_their_text_or_inline_data() -> None:
    """What keeps a new chat from waiting on the SQLite writer (proxy.store.sqlite_calls)."""
    short = page_of({"role": "user", "content": "Hello?"})
    long = page_of({"role": "user", "content": "x" * (HEAVY_WRITE_CHARS + 1)})
    image = page_of({"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}},
    ]})
    assert [is_heavy([p]) for p in (short, long, image)] == [False, True, True]  # type: ignore[list-item]
    assert not is_heavy([])
