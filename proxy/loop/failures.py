"""How a failure of the memory path is logged, and told to a client that must retry."""

from __future__ import annotations

import sys

from proxy.errors import MemoryUnavailable
from proxy.logs import log
from proxy.store.base import StoreError


def log_failure(message: str, *args: object) -> None:
    """Log the exception being handled: a store that is unavailable (a database restarting,
    a disk full) as one line, since every request says the same while it lasts; anything
    else, a bug perhaps, with its traceback."""
    failure = sys.exc_info()[1]
    if isinstance(failure, StoreError):
        log.warning(message + ": %s", *args, failure)
    else:
        log.exception(message, *args)


def answer_not_stored() -> MemoryUnavailable:
    """What a client gets whose answer could not be stored before it was to get it (a
    session's: it may never send the answer again): a 503 to retry."""
    return MemoryUnavailable(
        "The answer could not be stored in the conversation memory; retry the request.",
        code="memory_unavailable")
