"""A message page's text is stored once (issue 13: a 2.7 MB message took 5.4 MB of body),
also when a Responses answer's item carries it again."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.store.codec import (
    CARRIED,
    HEAVY_WRITE_CHARS,
    decode_page,
    encode_page,
    is_heavy,
)
from proxy.tokens import counter_for_model
from proxy.upstream.responses_format import ITEMS
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.lean import lean_page
from proxy.vm.pages import Page


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


# An answer as the Responses API gives it (a recorded OpenAI one's shape) and a client
# resends it: the message a Responses conversation stores for it carries the item.
SAID_ITEM = {"id": "msg_68c2e8c26114819489dae5b59fceb7bf02e845978fbbb592", "type": "message",
             "status": "completed", "role": "assistant", "content": [
                 {"type": "output_text", "text": "The capital of France is Paris.",
                  "annotations": [], "logprobs": []}]}
_ITEMS = st.sampled_from([
    [SAID_ITEM],
    [{**SAID_ITEM, "content": [{**SAID_ITEM["content"][0], "text": "Something else."}]}],
    [{**SAID_ITEM, "content": [*SAID_ITEM["content"], {"type": "refusal", "refusal": "no"}]}],
    [SAID_ITEM, {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}],
    [{**SAID_ITEM, "content": "The capital of France is Paris."}],
    [{"type": "reasoning", "id": "rs_1", "summary": []}],
    ["not an item"],
])
_CONTENTS = st.sampled_from(["The capital of France is Paris.", "", None, "Other."])


def lean_page_of(message: dict[str, Any]) -> Page:
    return lean_page(message, 0, Counters(), counter_for_model("gpt-4o-mini"),
                     chain="0" * 32, now=1.0)


@given(_ITEMS, _CONTENTS, st.booleans())
def test_a_message_carrying_items_reads_back_as_it_was(
    items: list[Any], content: str | None, lean: bool
) -> None:
    message = {"role": "assistant", "content": content, CARRIED: items}
    page = lean_page_of(message) if lean else page_of(message)
    back = decode_page(encode_page(page))  # type: ignore[arg-type]
    assert back == page
    # In the same order, as it goes upstream again.
    assert orjson.dumps(back.message) == orjson.dumps(page.message)  # type: ignore[attr-defined]
    assert page.message == message  # type: ignore[attr-defined]  # (encoding copied it)


@pytest.mark.parametrize("lean", [False, True])
def test_an_answer_s_item_does_not_keep_its_text_twice(lean: bool) -> None:
    text = "Paris has been the capital of France for most of its history. " * 20
    item = {**SAID_ITEM, "content": [{**SAID_ITEM["content"][0], "text": text}]}
    message = {"role": "assistant", "content": text, CARRIED: [item]}
    page = lean_page_of(message) if lean else page_of(message)
    body = encode_page(page)  # type: ignore[arg-type]
    assert body.count(text.encode()) == 1
    assert decode_page(body).message == message


def test_the_carried_items_are_the_responses_dialect_s() -> None:
    assert CARRIED == ITEMS


def test_a_body_written_before_the_text_was_kept_once_reads_as_it_was() -> None:
    # Written by the code before (the item's text in full, no flag): read back unchanged.
    body = (b'{"lean":1,"page_id":"msg_1","anchor":1,"turn":1,"role":"assistant",'
            b'"chain_hash":"9c2765f99b9c047cf7687175e17758e5","message":{"role":"assistant",'
            b'"content":"Hello! How can I help?","vm_items":[{"id":"msg_1","type":"message",'
            b'"status":"completed","role":"assistant","content":[{"type":"output_text",'
            b'"text":"Hello! How can I help?","annotations":[],"logprobs":[]}]}]},'
            b'"created_at":1796526321.3,"extra":{"enc":"o200k_base","msg_tokens":11}}')
    page = decode_page(body)
    assert page.message[CARRIED][0]["content"][0]["text"] == "Hello! How can I help?"  # type: ignore[index]
    assert decode_page(encode_page(page)) == page
