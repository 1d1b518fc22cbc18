"""Noticing that the client went away while the proxy waits on the upstream.

uvicorn does not cancel a request's task when its client disconnects; it only reports
`http.disconnect` to whoever calls `receive()`. A non-streamed chat completion can take
minutes upstream, so the wait is raced against that message and the upstream exchange is
cancelled (its connection closed) as soon as nobody is left to read the answer.

A wait gets its watcher only once it has lasted `WATCH_AFTER_S`: most exchanges are over
sooner, and a task per request is a measurable share of a pass-through's cost. The delay is
well above what a request waits in a busy proxy's queue, or every request of an overloaded
proxy would pay for a watcher exactly when it can least afford one; a model that is left
generating for a second longer costs nothing worth that. Nor does each wait get a timer:
one timer per event loop looks over all the waits every `SWEEP_EVERY_S` while there are
any, so a watcher starts between 1 and 1.5 s into a wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

T = TypeVar("T")

WATCH_AFTER_S = 1.0
SWEEP_EVERY_S = 0.5


class ClientDisconnected(Exception):
    """The client closed its connection before the answer was ready (logged as 499)."""


class _Wait:
    __slots__ = ("task", "receive", "since", "watcher", "gone")

    def __init__(self, task: asyncio.Task[object], receive: Receive, since: float) -> None:
        self.task = task
        self.receive = receive
        self.since = since
        self.watcher: asyncio.Task[None] | None = None
        self.gone = False


class _Waits:
    """The waits on one event loop, and the one timer that looks them over."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waits: set[_Wait] = set()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, wait: _Wait) -> None:
        self.waits.add(wait)
        if self.timer is None:
            self.timer = self.loop.call_later(SWEEP_EVERY_S, self._sweep)

    def _sweep(self) -> None:
        self.timer = None
        if not self.waits:
            return
        due = self.loop.time() - WATCH_AFTER_S
        for wait in self.waits:
            if wait.watcher is None and wait.since <= due:
                wait.watcher = self.loop.create_task(_watch(wait))
        self.timer = self.loop.call_later(SWEEP_EVERY_S, self._sweep)


async def _watch(wait: _Wait) -> None:
    while (await wait.receive())["type"] != "http.disconnect":
        pass
    wait.gone = True
    wait.task.cancel()


# The waits of the loop last seen. A loop that is not the last one seen gets a fresh
# `_Waits`; the waits already registered with an older one keep their own timer.
_latest: _Waits | None = None


def _waits_on(loop: asyncio.AbstractEventLoop) -> _Waits:
    global _latest
    waits = _latest
    if waits is None or waits.loop is not loop:
        waits = _latest = _Waits(loop)
    return waits


async def unless_disconnected(receive: Receive, awaitable: Awaitable[T]) -> T:
    """Await `awaitable`; if the client disconnects first, cancel it and raise.

    Call only after the request body has been read: body messages that arrive here are
    discarded.
    """
    task = asyncio.current_task()
    assert task is not None
    waits = _waits_on(task.get_loop())
    wait = _Wait(task, receive, waits.loop.time())
    waits.add(wait)
    try:
        result = await awaitable
    except asyncio.CancelledError:
        if wait.gone:
            task.uncancel()
            raise ClientDisconnected() from None
        raise
    finally:
        waits.waits.discard(wait)
        if wait.watcher is not None:
            wait.watcher.cancel()
    if wait.gone:
        # The awaitable finished despite the cancel; do not let it hit a later await.
        task.uncancel()
    return result
