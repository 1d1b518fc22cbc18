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

from proxy.loop.prefix_cache import PrefixCache

Tip = tuple[str, str, int]  # tenant, conversation, its length: where the new messages go


class TipClaims:
    def __init__(self) -> None:
        # Tip -> the number of messages of the request holding it.
        self._claimed: dict[Tip, int] = {}

    def claim(self, tip: Tip, messages: int) -> bool:
        """Claim `tip` for a request of `messages` messages: False when another request in
        flight holds it."""
        if tip in self._claimed:
            return False
        self._claimed[tip] = messages
        return True

    def rival(self, tip: Tip, messages: int) -> bool:
        """Whether a request of `messages` messages placed on `tip` is a rival of the one
        holding it (as long: the same history with its own question), not its next turn."""
        holder = self._claimed.get(tip)
        return holder is not None and messages <= holder

    def release(self, tip: Tip) -> None:
        self._claimed.pop(tip, None)

    def __len__(self) -> int:
        return len(self._claimed)


def taken(cache: PrefixCache, tip: Tip, messages: int) -> bool:
    """Whether `tip` was taken since a request of `messages` messages was placed on it: the
    latest row the prefix cache saw of its conversation goes on past it (another request
    stored its turn there and let go of its claim meanwhile), and the request does not
    continue that row (as long as it or shorter: a rival come late)."""
    seen = cache.row(tip[0], tip[1])
    return seen is not None and seen[0].length > tip[2] and messages <= seen[0].length
