"""Structured logs: one JSON object per line on stderr.

The access log has exactly one line per request. Nothing here ever logs a header value or
a body; `server.log_content` lets the code paths that hold content (the fault loop) add it
deliberately.

Access lines skip the `logging` machinery once `configure()` has run: a LogRecord, its
handler lock and formatter cost about a quarter of a pass-through request's CPU, for a
line whose fields are already a dict. They still obey the `vm_proxy.access` logger's level,
and go through `logging` as usual when `configure()` was not called (library use, tests).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

ACCESS_LOGGER = "vm_proxy.access"
access_log = logging.getLogger(ACCESS_LOGGER)
log = logging.getLogger("vm_proxy")

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# uvicorn adds an ANSI-coloured copy of each message.
_DROPPED = frozenset({"color_message"})


# Where a request's RequestStats live in its ASGI scope.
_STATS_KEY = "vm_request"


@dataclass(slots=True)
class RequestStats:
    """The fields of one request's access line that its handlers fill in."""

    request_id: str
    bytes_in: int = 0  # request body bytes, counted by whoever reads the body
    upstream_ms: float | None = None
    upstream_request_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def start_request_stats(scope: MutableMapping[str, Any], request_id: str) -> RequestStats:
    """A request's stats, kept in its ASGI scope (by the access middleware, first)."""
    stats = RequestStats(request_id=request_id)
    scope.setdefault("state", {})[_STATS_KEY] = stats
    return stats


def request_stats(scope: MutableMapping[str, Any]) -> RequestStats:
    stats = scope.get("state", {}).get(_STATS_KEY)
    if stats is None:  # a handler called outside the middleware (unit tests)
        stats = start_request_stats(scope, "-")
    assert isinstance(stats, RequestStats)
    return stats


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in _DROPPED:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _AccessSink:
    """Where access lines go once configured: a binary stream, one write per line."""

    stream: IO[bytes] | None = None


_sink = _AccessSink()


def configure(level: str = "info", stream: IO[str] | None = None) -> None:
    """Send `vm_proxy.*` records, uvicorn's and asyncpg's (its pool's reconnection
    attempts while PostgreSQL is down) to `stream` (stderr) as JSON lines."""
    target = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(target)
    handler.setFormatter(JsonFormatter())
    for name in ("vm_proxy", "uvicorn", "uvicorn.error", "asyncpg"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    _sink.stream = getattr(target, "buffer", None)


def log_request(
    *,
    method: str,
    route: str,
    path: str,
    status: int,
    duration_ms: float,
    upstream_ms: float | None,
    bytes_in: int,
    bytes_out: int,
    request_id: str | None,
    upstream_request_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    # The direct line opens with what JsonFormatter would put first.
    stream = _sink.stream
    line: dict[str, Any] = {} if stream is None else {
        "ts": int(time.time() * 1000.0) / 1000.0,
        "level": "info",
        "logger": ACCESS_LOGGER,
        "msg": "request",
    }
    line["method"] = method
    line["route"] = route
    line["path"] = path
    line["status"] = status
    line["duration_ms"] = _hundredths(duration_ms)
    line["upstream_ms"] = None if upstream_ms is None else _hundredths(upstream_ms)
    line["bytes_in"] = bytes_in
    line["bytes_out"] = bytes_out
    line["request_id"] = request_id
    if upstream_request_id:
        line["upstream_request_id"] = upstream_request_id
    if extra:
        line.update(extra)
    if stream is None:
        access_log.info("request", extra=line)
        return
    try:
        stream.write(orjson.dumps(line, default=str, option=orjson.OPT_APPEND_NEWLINE))
        stream.flush()
    except (OSError, ValueError):  # stderr closed or gone: logging must not fail a request
        _sink.stream = None


def _hundredths(value: float) -> float:
    # round(value, 2) goes through a correctly rounded decimal conversion, several times
    # dearer than this; a latency in a log line needs no such care.
    return int(value * 100.0 + 0.5) / 100.0
