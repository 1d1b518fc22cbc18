"""Every recorded Responses reply (../shared/recorded/responses) read as the loop reads it:
the items of a stream, however its server framed and ordered them, are the output its
`response.completed` reports; an error, in a stream or a body, is an error."""

from __future__ import annotations

import json

import pytest

from proxy.upstream.responses import EventAccumulator, read_response
from proxy.upstream.sse import SSEDecoder
from tests.upstream.responses_recordings import Exchange, exchanges, require

STREAMS = [e for e in exchanges() if e.is_stream and e.status == 200]
BODIES = [e for e in exchanges() if not e.is_stream]


def _events(exchange: Exchange) -> EventAccumulator:
    accumulator = EventAccumulator()
    decoder = SSEDecoder()
    body = exchange.body
    for start in range(0, len(body), 97):  # arbitrary cuts, as a network delivers them
        for event in decoder.feed(body[start : start + 97]):
            accumulator.feed_event(event)
    for event in decoder.flush():
        accumulator.feed_event(event)
    return accumulator


def test_recordings_present() -> None:
    require()
    assert len(STREAMS) >= 15 and len(BODIES) >= 15


@pytest.mark.parametrize("exchange", STREAMS, ids=[e.name for e in STREAMS])
def test_stream_items_are_the_completed_output(exchange: Exchange) -> None:
    accumulator = _events(exchange)
    message = accumulator.result()
    completed = accumulator.response if accumulator.finished else None
    if accumulator.error is not None:
        assert message.error is not None and message.error["message"]
        assert "insufficient_quota" in json.dumps(message.error)
        return
    assert completed is not None, "a stream that ends without response.completed"
    # Items as closed event by event are the final output (when the server sends it).
    closed = [accumulator.done[i] for i in sorted(accumulator.done)]
    if completed.get("output"):
        assert message.items == completed["output"]
        assert [i["type"] for i in closed] == [i["type"] for i in completed["output"]]
    else:
        assert message.items == closed
    calls = [i for i in message.items if i["type"] == "function_call"]
    assert [c["id"] for c in message.tool_calls] == [c["call_id"] for c in calls]
    for call in message.tool_calls:
        json.loads(call["function"]["arguments"])  # whole arguments, even from .done only
    texts = [p["text"] for i in message.items if i["type"] == "message"
             for p in i["content"] if p.get("type") == "output_text"]
    assert (message.content or "") == "\n\n".join(t for t in texts if t)
    assert message.usage == completed.get("usage")


@pytest.mark.parametrize("exchange", BODIES, ids=[e.name for e in BODIES])
def test_body_is_read(exchange: Exchange) -> None:
    message = read_response(json.loads(exchange.body))
    if exchange.status >= 400:
        assert message.error is not None and message.error["message"]
        return
    body = json.loads(exchange.body)
    assert message.error is None
    assert message.items == body["output"] and message.id == body["id"]
    assert message.status == body["status"]
