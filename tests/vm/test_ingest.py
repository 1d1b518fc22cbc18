from __future__ import annotations

import json

import orjson

from proxy.tokens import ChatFormat, TokenCounter, counter_for_model, get_encoding
from proxy.vm.identity import chain_hashes
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.pages import Modality, PageKind
from tests.vm.conversations import png_data_url

COUNTER = counter_for_model("gpt-4o")


def ingest(messages, counters=None, first=0, **kw):  # type: ignore[no-untyped-def]
    counters = counters or Counters()
    result = ingest_messages(
        messages,
        first_position=first,
        counters=counters,
        counter=COUNTER,
        segment_turns=kw.pop("segment_turns", 8),
        clock=lambda: 123.0,
        **kw,
    )
    return result, counters


def test_message_pages_take_their_position_as_id() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello, I live in Lisbon."},
        {"role": "assistant", "content": "Hi! Lisbon is lovely."},
    ]
    hashes = chain_hashes("t", messages)
    result, counters = ingest(messages, chain_hashes=hashes)
    pages = {p.page_id: p for p in result.pages}
    assert [p.page_id for p in result.pages[:3]] == ["msg_0", "msg_1", "msg_2"]
    assert pages["msg_1"].chain_hash == hashes[1] and pages["msg_1"].message == messages[1]
    assert pages["msg_0"].anchor == 0 and pages["msg_2"].turn == 1
    assert counters.messages == 3 and counters.turns == 1 and counters.preamble == 1
    assert counters.user_positions == [1]
    more, _ = ingest([{"role": "user", "content": "And Porto?"}], counters, first=3)
    assert more.pages[0].page_id == "msg_3" and counters.user_positions == [1, 3]


def test_renderings_and_counts_are_made_once_and_consistent() -> None:
    text = "We decided to use PostgreSQL 16. " + "Some filler sentence about the plan. " * 30
    result, _ = ingest([{"role": "user", "content": text}])
    page = result.pages[0]
    assert page.renderings[0] == text
    assert page.renderings[3] == f"msg_0: {page.hint}"
    assert page.tokens == tuple(COUNTER.text(r) for r in page.renderings)
    assert page.tokens[1] < page.tokens[0] and page.tokens[2] < page.tokens[1]
    assert page.extra["enc"] == "o200k_base"
    assert page.extra["msg_tokens"] == COUNTER.message({"role": "user", "content": text})
    assert page.created_at == 123.0


def test_tool_exchange_pages() -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    big = json.dumps({"hourly": [{"h": h, "t": h % 7, "note": "clear skies"} for h in range(48)]})
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": big},
    ]
    result, counters = ingest(messages[:2])
    assert counters.open_calls == {"c1": "get_weather"}
    assistant = result.pages[1]
    assert assistant.kind is PageKind.PROCEDURE and assistant.tool_call_ids == ("c1",)
    assert assistant.hint == "called get_weather" and "get_weather(" in assistant.text
    result, counters = ingest(messages[2:], counters, first=2)
    tool = result.pages[0]
    assert counters.open_calls == {}
    assert tool.modality is Modality.STRUCTURED and tool.kind is PageKind.ARTIFACT
    assert tool.extra["function"] == "get_weather" and tool.hint.startswith("get_weather result")
    assert tool.extra["msg_tokens"] == COUNTER.message(messages[2], {"c1": "get_weather"})
    assert orjson.loads(tool.renderings[1])["hourly"][0] == {"h": 0, "t": 0, "note": "clear skies"}
    small, _ = ingest([{"role": "tool", "tool_call_id": "x", "content": "ok"}])
    assert small.pages[0].kind is PageKind.PROCEDURE and small.pages[0].modality is Modality.TEXT


def test_images_get_their_own_pages_and_the_message_keeps_its_parts() -> None:
    data_url = png_data_url(640, 480)
    parts = [
        {"type": "text", "text": "Floor plan of the office"},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
    ]
    result, counters = ingest([{"role": "user", "content": parts}])
    message, *rest = result.pages
    images = [p for p in rest if p.page_id.startswith("img_")]
    assert message.message is not None and message.message["content"] == parts
    assert message.text == "Floor plan of the office\n[image]\n[image]"
    assert [p.page_id for p in images] == ["img_0", "img_1"] and counters.images == 2
    first, second = images
    assert first.modality is Modality.IMAGE and first.covers == ("msg_0",)
    assert first.extra["url"] == data_url and "640x480" in first.text
    assert "Floor plan" in first.hint and second.extra["detail"] == "auto"
    assert "https://example.com/a.jpg" in second.text


def test_audio_transcripts_become_text() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "audio": {"id": "a1", "transcript": "The meeting moved to Thursday."},
    }
    result, _ = ingest([message])
    page = result.pages[0]
    assert page.modality is Modality.AUDIO and "moved to Thursday" in page.text


def test_claims_with_provenance_and_no_repeats() -> None:
    messages = [
        {"role": "user", "content": "Hi. My cat is called Miso. Remember that I hate onions."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "my cat is called Miso!"},
    ]
    result, counters = ingest(messages)
    claims = [p for p in result.pages if p.kind is PageKind.CLAIM]
    assert [c.text for c in claims] == ["My cat is called Miso.", "Remember that I hate onions."]
    assert all(c.covers == ("msg_0",) and c.anchor == 0 for c in claims)
    assert [c.page_id for c in claims] == ["claim_0", "claim_1"]
    assert counters.recent_claims == ["claim_0", "claim_1"]
    assert result.pages[0].importance > result.pages[1].importance


def test_every_new_page_is_logged_as_created() -> None:
    result, counters = ingest([{"role": "user", "content": "I live in Porto."}])
    assert [(m.event, m.page_id) for m in result.mutations] == [
        ("create", "msg_0"),
        ("create", "claim_0"),
    ]
    assert all(m.turn == counters.turns and m.at == 123.0 for m in result.mutations)


def test_counters_round_trip_through_json() -> None:
    _, counters = ingest(
        [
            {"role": "system", "content": "x"},
            {"role": "user", "content": "I live in Porto."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
        ]
    )
    data = json.loads(json.dumps(counters.to_dict()))
    assert Counters.from_dict(data) == counters
    assert Counters.from_dict(None) == Counters()


def test_segment_jobs_every_k_user_turns() -> None:
    messages = [{"role": "system", "content": "s"}]
    for turn in range(7):
        messages += [{"role": "user", "content": f"q{turn}"}, {"role": "assistant", "content": "a"}]
    result, counters = ingest(messages, segment_turns=3)
    jobs = result.segment_jobs
    assert [(j.seg_id, j.lo, j.hi) for j in jobs] == [("seg_0", 0, 7), ("seg_1", 7, 13)]
    assert counters.segment_from == 13 and counters.segments == 2
    assert jobs[0].page_ids()[0] == "msg_0" and jobs[0].page_ids()[-1] == "msg_6"


def test_unanswered_calls_do_not_pile_up_in_the_state() -> None:
    counters = Counters()
    for n in range(100):
        call = {"id": f"c{n}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ingest([{"role": "assistant", "content": None, "tool_calls": [call]}], counters, first=n)
    assert len(counters.open_calls) == 64 and "c99" in counters.open_calls
    assert "c0" not in counters.open_calls


def test_a_long_message_is_tokenized_once() -> None:
    counter = TokenCounter(get_encoding("o200k_base"), ChatFormat())
    counted: list[str] = []
    real = counter.encoding

    class Spy:
        name = real.name

        def encode_ordinary(self, text: str) -> list[int]:
            counted.append(text)
            return real.encode_ordinary(text)

    counter.encoding = Spy()  # type: ignore[assignment]
    text = "The storage plan moved to Postgres in May after the load tests. " * 40
    ingest_messages([{"role": "user", "content": text}], first_position=0,
                    counters=Counters(), counter=counter, segment_turns=8)  # fmt: skip
    assert counted.count(text) == 1
