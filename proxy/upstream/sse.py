"""Server-sent events: an incremental decoder and the encoders for what the proxy sends.

Pure and I/O-free. The decoder follows the WHATWG event-stream rules (line endings
`\\n`, `\\r\\n` or `\\r`; `data:` lines joined with `\\n`; a blank line dispatches) and
splits on bytes, never per byte, because it sits on the streaming hot path. Lines are
decoded only once complete, so a chunk boundary inside a multi-byte UTF-8 character is
harmless (line terminators are ASCII and never occur inside one).

Comments (`: OPENROUTER PROCESSING`) come out as their own events with `comment` set, so
a relay can keep or drop them; spec-following clients ignore them either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "DONE",
    "SSEDecoder",
    "SSEEvent",
    "encode_comment",
    "encode_data",
    "encode_error",
]

DONE = b"data: [DONE]\n\n"

_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event, or one comment line (then `comment` is set and `data` is "")."""

    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    @property
    def is_comment(self) -> bool:
        return self.comment is not None

    @property
    def is_done(self) -> bool:
        # openai-python stops at any data that *starts* with [DONE]; so do we.
        return self.comment is None and self.data.startswith("[DONE]")

    def json(self) -> Any:
        """The data parsed as JSON (raises orjson.JSONDecodeError if it is not JSON)."""
        return orjson.loads(self.data)


class SSEDecoder:
    """Feed raw bytes as they arrive; get back the events they complete."""

    __slots__ = ("_pending", "_skip_lf", "_data", "_has_data", "_event", "_id", "_retry",
                 "_started")

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # bytes of an unfinished line, not yet joined
        self._skip_lf = False  # the last chunk ended in \r: a leading \n is its other half
        self._data: list[str] = []
        self._has_data = False
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        has_cr = b"\r" in chunk
        if not has_cr and b"\n" not in chunk:
            self._pending.append(chunk)  # no line ends here: just remember it
            return []
        if self._pending:
            self._pending.append(chunk)
            chunk = b"".join(self._pending)
            self._pending = []
        if has_cr:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end + 1 < len(chunk):
            self._pending.append(chunk[end + 1 :])
        return self._lines(chunk[:end].split(b"\n"))

    def flush(self) -> list[SSEEvent]:
        """End of stream: process an unterminated last line and dispatch what is pending.

        Stricter parsers drop an event that lacks its closing blank line; a proxy loses
        less by delivering it (an upstream that dies mid-write still said something).
        """
        self._skip_lf = False
        events: list[SSEEvent] = []
        if self._pending:
            tail = b"".join(self._pending)
            self._pending = []
            events = self._lines([tail])
        dispatched = self._dispatch()
        if dispatched is not None:
            events.append(dispatched)
        return events

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for raw in lines:
            if not raw:
                dispatched = self._dispatch()
                if dispatched is not None:
                    events.append(dispatched)
                continue
            line = raw.decode("utf-8", "replace")
            if not self._started:
                self._started = True
                if line.startswith(_BOM):
                    line = line[1:]
                    if not line:
                        continue
            if line[0] == ":":
                text = line[1:]
                events.append(SSEEvent(comment=text[1:] if text[:1] == " " else text))
                continue
            name, colon, value = line.partition(":")
            if colon and value[:1] == " ":
                value = value[1:]
            if name == "data":
                self._data.append(value)
                self._has_data = True
            elif name == "event":
                self._event = value
            elif name == "id":
                if "\0" not in value:
                    self._id = value
            elif name == "retry":
                if value.isdigit():
                    self._retry = int(value)
            # any other field name is ignored, as the spec says
        return events

    def _dispatch(self) -> SSEEvent | None:
        event = self._event
        self._event = None
        retry = self._retry
        self._retry = None
        if not self._has_data:
            self._data = []
            return None
        data = self._data[0] if len(self._data) == 1 else "\n".join(self._data)
        self._data = []
        self._has_data = False
        # The last event id persists across events, as in the spec.
        return SSEEvent(data=data, event=event, id=self._id, retry=retry)


# Characters JSON may hold raw that some SSE readers take for a line break (Python's
# str.splitlines does), cutting an event in two: written as JSON escapes instead.
_LINE_LIKE = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def json_bytes(payload: Any) -> bytes:
    """Compact JSON for one SSE `data:` line."""
    body = orjson.dumps(payload)
    if b"\xc2\x85" in body or b"\xe2\x80" in body:
        for raw, escaped in _LINE_LIKE:
            body = body.replace(raw, escaped)
    return body


def encode_data(payload: Any, *, event: str | None = None) -> bytes:
    """`data: <payload>\\n\\n`: dicts/lists as compact JSON, str/bytes verbatim.

    Verbatim text with line breaks becomes several `data:` lines, which a decoder joins
    back with `\\n`.
    """
    if isinstance(payload, bytes):
        body = payload
    elif isinstance(payload, str):
        body = payload.encode()
    else:
        body = json_bytes(payload)
    if b"\n" in body or b"\r" in body:
        lines = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        body = b"\ndata: ".join(lines)
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + body + b"\n\n"


def encode_comment(text: str = "") -> bytes:
    """An SSE comment (`: text\\n\\n`), e.g. a keep-alive; clients ignore it."""
    if not text:
        return b":\n\n"
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "".join(f": {line}\n" for line in lines).encode() + b"\n"


def encode_error(
    message: str,
    *,
    error_type: str = "server_error",
    code: str | int | None = None,
    param: str | None = None,
    event: str | None = None,
) -> bytes:
    """A mid-stream error in OpenAI's shape: `data: {"error": {...}}\\n\\n`.

    openai-python raises `APIError` on any data whose JSON has a top-level `error`, with
    or without an `event:` line, so `event` defaults to none (plain OpenAI framing).
    """
    error = {
        "message": message,
        "type": error_type,
        "param": param,
        "code": None if code is None else str(code),
    }
    return encode_data({"error": error}, event=event)
