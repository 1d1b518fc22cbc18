"""Which conversation tips a short chat's turn in flight will store its answer on.

A short chat's turn (proxy.loop.short_chat) names its conversation in the response headers
and stores its question and answer there after the response is sent. Two turns placed on
the same tip at once (an evaluation sampling one prompt many times in parallel, a client
retrying a request still in flight, the same new chat opened by many clients) would both
name that conversation, though only one can continue it: the other's append would find
it changed and go on a fork, which its response did not name. So the first turn placed on
a tip claims it until its append is made; a turn placed there meanwhile goes on a fork of
its own from the start, which its response names. (Per process: another replica's turns
are not seen.)
"""

from __future__ import annotations

Tip = tuple[str, str, int]  # tenant, conversation, its length: where the new messages go


class TipClaims:
    def __init__(self) -> None:
        self._claimed: set[Tip] = set()

    def claim(self, tip: Tip) -> bool:
        """Claim `tip` for a turn: False when another turn in flight holds it."""
        if tip in self._claimed:
            return False
        self._claimed.add(tip)
        return True

    def release(self, tip: Tip) -> None:
        self._claimed.discard(tip)

    def __len__(self) -> int:
        return len(self._claimed)
