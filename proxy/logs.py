"""Structured logs: one JSON object per line on stderr.

The access logger writes exactly one line per request. Nothing here ever logs a header
value or a body; `server.log_content` lets the code paths that hold content (the fault
loop, with `content_logging_enabled`) add it deliberately.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

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


_FIELDS = "vm_fields"
# uvicorn adds an ANSI-coloured copy of each message.
_DROPPED = frozenset({"color_message"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__.get(_FIELDS)
        if fields is not None:  # an access line: its fields come as one dict
            line.update(fields)
        else:
            for key, value in record.__dict__.items():
                if key not in _STANDARD_ATTRS and key not in _DROPPED:
                    line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str = "info") -> None:
    """Send `vm_proxy.*` (and uvicorn's own) records to stderr as JSON lines.

    Also turns off what every LogRecord would otherwise compute and these lines never
    show (caller frame, thread and process names): the logging docs' "Optimization" list,
    worth a measurable share of a pass-through request.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("vm_proxy", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


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
    extra: dict[str, Any] | None = None,
) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "method": method,
        "route": route,
        "path": path,
        "status": status,
        "duration_ms": round(duration_ms, 2),
        "upstream_ms": None if upstream_ms is None else round(upstream_ms, 2),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "request_id": request_id,
    }
    if extra:
        fields.update(extra)
    access_log.info("request", extra={_FIELDS: fields})


def now_ms() -> float:
    return time.perf_counter() * 1000.0
