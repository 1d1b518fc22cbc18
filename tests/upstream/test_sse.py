from __future__ import annotations

import json
import random

import orjson
import pytest
from openai._streaming import SSEDecoder as OpenAIDecoder

from proxy.upstream.sse import DONE, SSEDecoder, SSEEvent, encode_comment, encode_data, encode_error

from .recordings import Recording, streamed


def decode_all(chunks: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.flush())
    return events


def splits(data: bytes, rng: random.Random, max_piece: int) -> list[bytes]:
    out = []
    i = 0
    while i < len(data):
        n = rng.randint(1, max_piece)
        out.append(data[i : i + n])
        i += n
    return out


def test_single_data_event() -> None:
    assert decode_all([b'data: {"a":1}\n\n']) == [SSEEvent(data='{"a":1}')]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(eol: bytes) -> None:
    raw = eol.join([b"event: error", b"data: one", b"data: two", b"", b"data: x", b"", b""])
    events = decode_all([raw])
    assert events == [SSEEvent(data="one\ntwo", event="error"), SSEEvent(data="x")]
    # and byte by byte (a \r\n split between two chunks counts once)
    assert decode_all([raw[i : i + 1] for i in range(len(raw))]) == events


def test_cr_then_lf_in_next_chunk_is_one_line_end() -> None:
    events = decode_all([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"])
    assert [e.data for e in events] == ["a", "b"]


def test_lone_cr_then_blank_line() -> None:
    # "\r" ends the data line, the next "\r" is the blank line: one event
    assert [e.data for e in decode_all([b"data: a\r", b"\r"])] == ["a"]


def test_comment_surfaces_as_event() -> None:
    events = decode_all([b": OPENROUTER PROCESSING\n\ndata: 1\n\n:\n\n"])
    assert events == [
        SSEEvent(comment="OPENROUTER PROCESSING"),
        SSEEvent(data="1"),
        SSEEvent(comment=""),
    ]
    assert events[0].is_comment and not events[1].is_comment


def test_field_without_space_and_without_colon() -> None:
    events = decode_all([b"data:x\ndata\n\n"])
    assert events == [SSEEvent(data="x\n")]


def test_unknown_fields_and_event_without_data_are_ignored() -> None:
    assert decode_all([b"foo: bar\n\nevent: ping\n\n"]) == []


def test_id_persists_and_retry_is_parsed() -> None:
    events = decode_all([b"id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nretry: x\ndata: c\n\n"])
    assert [(e.id, e.retry) for e in events] == [("7", 1500), ("7", None), ("7", None)]


def test_multibyte_utf8_split_anywhere() -> None:
    text = '{"content":"olá — 😀 漢字"}'
    raw = f"data: {text}\n\n".encode()
    for cut in range(1, len(raw)):
        assert decode_all([raw[:cut], raw[cut:]]) == [SSEEvent(data=text)]


def test_bom_at_start_is_dropped() -> None:
    assert decode_all(["\ufeffdata: a\n\n".encode()]) == [SSEEvent(data="a")]


def test_flush_delivers_unterminated_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: tail") == []
    assert decoder.flush() == [SSEEvent(data="tail")]
    assert decoder.flush() == []


def test_done_detection() -> None:
    assert SSEEvent(data="[DONE]").is_done
    assert not SSEEvent(data='{"a":1}').is_done
    assert not SSEEvent(comment="[DONE]").is_done


def test_encode_data_compact_json() -> None:
    assert encode_data({"a": [1, 2], "b": "é"}) == 'data: {"a":[1,2],"b":"é"}\n\n'.encode()
    assert encode_data(b'{"x":1}') == b'data: {"x":1}\n\n'
    assert encode_data("a\nb", event="message") == b"event: message\ndata: a\ndata: b\n\n"
    assert DONE == b"data: [DONE]\n\n"


def test_encoders_round_trip() -> None:
    raw = encode_comment("keep-alive") + encode_data("line1\r\nline2") + encode_comment("a\nb")
    assert decode_all([raw]) == [
        SSEEvent(comment="keep-alive"),
        SSEEvent(data="line1\nline2"),
        SSEEvent(comment="a"),
        SSEEvent(comment="b"),
    ]
    assert encode_comment() == b":\n\n"


def test_encode_error_shape() -> None:
    raw = encode_error("Token limit reached", error_type="invalid_request_error", code=400)
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    assert orjson.loads(raw[6:-2]) == {
        "error": {
            "message": "Token limit reached",
            "type": "invalid_request_error",
            "param": None,
            "code": "400",
        }
    }
    assert encode_error("x", event="error").startswith(b"event: error\ndata: {")


def test_encode_error_raises_in_openai_sdk() -> None:
    import httpx
    import openai

    body = encode_data({"id": "c", "object": "chat.completion.chunk", "created": 1,
                        "model": "m", "choices": []}) + encode_error("boom", code="x")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(api_key="k", base_url="http://upstream.test/v1",
                           http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    stream = client.chat.completions.create(model="m", messages=[], stream=True)
    with pytest.raises(openai.APIError, match="boom"):
        list(stream)


# --- every streamed recording -------------------------------------------------------------


def _ids(rec: Recording) -> str:
    return rec.name


@pytest.mark.parametrize("rec", streamed(), ids=_ids)
def test_recording_matches_openai_decoder(rec: Recording) -> None:
    ours = [e for e in decode_all([rec.body]) if not e.is_comment]
    theirs = list(OpenAIDecoder().iter_bytes(iter([rec.body])))
    assert [(e.event, e.data) for e in ours] == [(e.event, e.data) for e in theirs]
    assert ours, "a streamed recording yields events"
    comments = [e for e in decode_all([rec.body]) if e.is_comment]
    expected_comments = sum(1 for line in rec.body.splitlines() if line.startswith(b":"))
    assert len(comments) == expected_comments


@pytest.mark.parametrize("rec", streamed(), ids=_ids)
def test_recording_byte_by_byte_and_random_splits(rec: Recording) -> None:
    whole = decode_all([rec.body])
    body = rec.body
    assert decode_all([body[i : i + 1] for i in range(len(body))]) == whole
    rng = random.Random(rec.name)
    for max_piece in (3, 17, 200, 4096):
        assert decode_all(splits(body, rng, max_piece)) == whole
    crlf = body.replace(b"\n", b"\r\n")
    assert decode_all(splits(crlf, rng, 7)) == whole


def test_json_events_hold_no_character_a_reader_may_split_lines_at() -> None:
    """U+0085, U+2028 and U+2029 are valid raw in JSON, but Python's str.splitlines (and
    readers built on it) ends a line there: they are written as escapes."""
    payload = {"text": "a\x85b\u2028c\u2029d é"}
    event = encode_data(payload)
    text = event.decode()
    assert len(text.strip().splitlines()) == 1
    assert json.loads(text.removeprefix("data: ")) == payload
