"""How many requests this process is serving now (the access middleware counts them).

Process-wide on purpose: what it tells, whether the event loop has other requests to run,
is the process's, as is the GIL that the SQLite store's writer thread shares with the loop
(proxy.store.sqlite_calls waits on that thread only for a request served alone).
"""

from __future__ import annotations


class Serving:
    __slots__ = ("requests",)

    def __init__(self) -> None:
        self.requests = 0


SERVING = Serving()
