"""The end of a relayed Responses API stream that the upstream broke off.

A Responses stream relayed as it came (proxy.upstream.relay) whose connection drops or
times out has told its client 200 and some events already. It ends as the API ends a
failed stream (../shared/recorded/responses/EVENTS.md): an `error` event, which the openai
SDK raises on, then `response.failed`, each with the next `sequence_number` of the
stream, in the shape a memory turn's stream ends with (proxy.loop.responses_stream). To
number them and to say which response failed, a copy of the relayed bytes is read.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.errors import ProxyError
from proxy.upstream.sse import SSEDecoder, json_bytes

_TERMINAL = frozenset(("response.completed", "response.failed", "response.incomplete"))


class RelayedEvents:
    """What a relayed Responses stream said: its last sequence number and the Response
    object it last showed (`response.created`, `.in_progress`, ...)."""

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._next = 0  # the sequence number the next event gets
        self._response: dict[str, Any] | None = None
        # A response.completed (or .failed, .incomplete) was relayed: the stream said all it
        # had to say, and a connection broken after it broke nothing.
        self.ended = False

    def saw(self, chunk: bytes) -> None:
        """Read the relayed `chunk`."""
        for event in self._decoder.feed(chunk):
            if event.is_comment or event.is_done:
                continue
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(data, dict):
                continue
            number = data.get("sequence_number")
            # (Upstreams from before sequence numbers: the count of events, from 0.)
            self._next = number + 1 if isinstance(number, int) else self._next + 1
            response = data.get("response")
            if isinstance(response, dict):
                self._response = response
            if data.get("type") in _TERMINAL:
                self.ended = True

    def failed(self, error: ProxyError) -> bytes:
        """The stream's end: `error`, and `response.failed` when a response was shown."""
        shown = error.to_dict()["error"]
        fields = {"type": shown["type"], "code": shown["code"], "message": shown["message"],
                  "param": shown["param"]}
        out = self._event({"type": "error", "error": fields})
        if self._response is not None:
            failed = {**self._response, "status": "failed", "output": [], "usage": None,
                      "error": {"code": fields["code"], "message": fields["message"]}}
            out += self._event({"type": "response.failed", "response": failed})
        return out

    def _event(self, data: dict[str, Any]) -> bytes:
        data["sequence_number"] = self._next
        self._next += 1
        return b"event: " + str(data["type"]).encode() + b"\ndata: " + json_bytes(data) + b"\n\n"
