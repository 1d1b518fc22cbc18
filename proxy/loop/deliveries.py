"""When each `X-VM-Session`'s latest response reached its client, in this process.

An SDK's retry (`x-stainless-retry-count`) of a session turn is ambiguous when the session
ends with the same question and an answer: either that answer was stored but never
delivered (the proxy died, or the connection broke, between the two), and the retry is of
that turn; or it was delivered, and the client asked the same question again in a request
that was lost before the proxy read it (a reset connection, a load balancer's 502), and
the retry is a new turn. A response sent whole after the answer was stored tells the
second case. What this process did not send (another replica's turn, one from before a
restart) counts as not delivered: the retry then goes on a fork after the stored question,
which is right after a crash.
"""

from __future__ import annotations

import time
from collections import OrderedDict

# Sessions remembered at once; the oldest are forgotten first.
MAX_SESSIONS = 10_000


class Deliveries:
    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._at: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._limit = limit

    def note(self, tenant: str, session: str) -> None:
        """A response of the session was sent whole, now."""
        key = (tenant, session)
        self._at[key] = time.time()
        self._at.move_to_end(key)
        if len(self._at) > self._limit:
            self._at.popitem(last=False)

    def since(self, tenant: str, session: str, stored_at: float) -> bool:
        """Did a response of the session reach its client after `stored_at` (wall clock)?"""
        sent = self._at.get((tenant, session))
        return sent is not None and sent >= stored_at
