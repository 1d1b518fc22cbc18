"""Noticing that the client went away while the proxy waits on the upstream.

uvicorn does not cancel a request's task when its client disconnects; it only reports
`http.disconnect` to whoever calls `receive()`. A non-streamed chat completion can take
minutes upstream, so the wait is raced against that message and the upstream exchange is
cancelled (its connection closed) as soon as nobody is left to read the answer.

The watcher starts only once the wait has lasted `WATCH_AFTER_S`: most exchanges are over
sooner, and a task per request is a measurable share of a pass-through's cost. The delay is
well above what a request waits in a busy proxy's queue, or every request of an overloaded
proxy would pay for a watcher exactly when it can least afford one; a model that is left
generating for a second longer costs nothing worth that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

T = TypeVar("T")

WATCH_AFTER_S = 1.0


class ClientDisconnected(Exception):
    """The client closed its connection before the answer was ready (logged as 499)."""


async def unless_disconnected(
    receive: Receive, awaitable: Awaitable[T], *, watch_after_s: float = WATCH_AFTER_S
) -> T:
    """Await `awaitable`; if the client disconnects first, cancel it and raise.

    Call only after the request body has been read: body messages that arrive here are
    discarded.
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False
    watcher: asyncio.Future[None] | None = None

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(watch())

    timer = asyncio.get_running_loop().call_later(watch_after_s, start_watching)
    try:
        result = await awaitable
    except asyncio.CancelledError:
        if gone:
            task.uncancel()
            raise ClientDisconnected() from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
    if gone:
        # The awaitable finished despite the cancel; do not let it hit a later await.
        task.uncancel()
    return result
