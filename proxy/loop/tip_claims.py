"""Which conversation tips a short chat's turn in flight will store its answer on.

A short chat's turn (proxy.loop.short_chat) names its conversation in the response headers
and stores its question and answer there after the response is sent. Two turns placed on
the same tip at once (an evaluation sampling one prompt many times in parallel, a client
retrying a request still in flight, the same new chat opened by many clients) would both
name that conversation, though only one can continue it: the other's append would find
it changed and go on a fork, which its response did not name. So the first turn placed on
a tip claims it until its append is made; a turn placed there meanwhile goes on a fork of
its own from the start, which its response names. (Per process: another replica's turns
are not seen.) The same holds for memory turns and for requests of the general path whose
messages are held for their answer (proxy.loop.handler).

A request placed on a claimed tip that is longer than the holder's is not a rival but the
holder's next turn, sent before the holder's append was made (a client that goes on as
soon as it has read `[DONE]`, while the stream is still being closed): it goes on the tip
unclaimed, as before claims, and its append, finding the conversation changed, places it
after the holder's turn.
"""

from __future__ import annotations

from enum import Enum

from proxy.loop.prefix_cache import PrefixCache

Tip = tuple[str, str, int]  # tenant, conversation, its length: where the new messages go


class Claim(Enum):
    HELD = "held"  # the request holds the tip until it lets go (`release`)
    RIVAL = "rival"  # another request holds or took it: this one goes on a fork of its own
    NEXT = "next"  # the holder's next turn: it goes on the tip unclaimed, as before claims


class TipClaims:
    def __init__(self, prefix_cache: PrefixCache) -> None:
        # Tip -> the number of messages of the request holding it.
        self._claimed: dict[Tip, int] = {}
        self._rows = prefix_cache  # the latest row seen of each conversation

    def claim(self, tip: Tip, messages: int) -> Claim:
        """What a request of `messages` messages placed on `tip` is to it (see above). A
        tip held by a request as long or longer is a rival's (the same history with its own
        question); a tip taken since the request was placed too (the latest row seen of its
        conversation goes on past it: another request stored its turn there and let go
        meanwhile), unless the request continues that row."""
        holder = self._claimed.get(tip)
        if holder is not None:
            return Claim.RIVAL if messages <= holder else Claim.NEXT
        seen = self._rows.row(tip[0], tip[1])
        if seen is not None and tip[2] < seen[0].length and messages <= seen[0].length:
            return Claim.RIVAL
        self._claimed[tip] = messages
        return Claim.HELD

    def release(self, tip: Tip) -> None:
        self._claimed.pop(tip, None)

    def __len__(self) -> int:
        return len(self._claimed)
