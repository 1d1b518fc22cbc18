"""Threads that run the SQLite store's blocking calls, and hand the outcomes to the loop.

A call's cost on a small machine is mostly the two wake-ups around it (the thread's, then
the event loop's), so the path is kept to those: a job list on a plain queue, and one
`call_soon_threadsafe` per batch that settles every job of it. `run_in_executor` adds a
concurrent future, its callbacks and a second future chained to it, about 30 µs a call.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

R = TypeVar("R")
# What a job's function runs with: the store supplies it (the thread's own connection).
Runner = Callable[[Callable[..., Any], tuple[Any, ...]], Any]


# At most this many queued batches share one group (one transaction of the SQLite writer).
MAX_GROUP = 256


class Job(Generic[R]):
    """One call waiting for a thread: what to run, and where its outcome goes."""

    __slots__ = ("fn", "args", "future", "result", "error")

    def __init__(
        self, fn: Callable[..., R], args: tuple[Any, ...], future: asyncio.Future[R]
    ) -> None:
        self.fn = fn
        self.args = args
        self.future = future
        self.result: R | None = None
        self.error: BaseException | None = None


def _settle(batch: list[Job[Any]]) -> None:
    for job in batch:
        if job.future.done():  # cancelled meanwhile
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


# Runs a group of jobs (their results and errors set on them), when a lane groups them.
Grouper = Callable[[list[Job[Any]]], None]


class Lane:
    """`threads` threads taking batches of jobs from one queue, first in first out.

    With `group`, a thread takes every batch queued when it is free and hands their jobs
    to `group` together (the SQLite writer commits them in one transaction), then settles
    them."""

    def __init__(self, threads: int, name: str, run: Runner, group: Grouper | None = None) -> None:
        self._queue: queue.SimpleQueue[
            tuple[asyncio.AbstractEventLoop, list[Job[Any]]] | None
        ] = queue.SimpleQueue()
        self._run = run
        self._group = group
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, loop: asyncio.AbstractEventLoop, batch: list[Job[Any]]) -> None:
        if self._closed:
            raise RuntimeError("the store is closed")
        self._queue.put((loop, batch))

    def close(self) -> None:
        """Run what is queued, then stop the threads."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            items = [item]
            stop = False
            if self._group is not None:
                while len(items) < MAX_GROUP:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    items.append(more)
            if self._group is not None and (len(items) > 1 or len(items[0][1]) > 1):
                self._group([job for _, batch in items for job in batch])
            else:
                for _, batch in items:
                    self.run_each(batch)
            for loop, batch in items:
                try:
                    loop.call_soon_threadsafe(_settle, batch)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    pass
            if stop:
                return

    def run_each(self, batch: list[Job[Any]]) -> None:
        for job in batch:
            try:
                job.result = self._run(job.fn, job.args)
            except Exception as exc:
                job.error = exc
