"""proxy.loop.tip_claims: one request in flight per conversation tip; its next turn is none
of its rivals."""

from __future__ import annotations

from proxy.loop.held import root_path
from proxy.loop.prefix_cache import PrefixCache
from proxy.loop.tip_claims import Claim, TipClaims
from proxy.store.base import Conversation


def test_a_tip_is_held_once_until_released() -> None:
    tips = TipClaims(PrefixCache())
    assert tips.claim(("t", "c", 4), 5) is Claim.HELD
    assert tips.claim(("t", "c", 4), 5) is Claim.RIVAL  # another request placed there
    assert tips.claim(("t", "c", 6), 7) is Claim.HELD
    assert tips.claim(("other", "c", 4), 5) is Claim.HELD
    tips.release(("t", "c", 4))
    assert tips.claim(("t", "c", 4), 5) is Claim.HELD
    for tip in (("t", "c", 4), ("t", "c", 6), ("other", "c", 4), ("other", "c", 4)):
        tips.release(tip)  # released twice: harmless
    assert len(tips) == 0


def test_a_request_longer_than_the_holders_is_its_next_turn() -> None:
    tips = TipClaims(PrefixCache())
    assert tips.claim(("t", "c", 4), 5) is Claim.HELD  # the history of 4, and a question
    assert tips.claim(("t", "c", 4), 5) is Claim.RIVAL  # the same history, another question
    assert tips.claim(("t", "c", 4), 7) is Claim.NEXT  # the holder's question, answer, next
    assert len(tips) == 1


def test_a_tip_taken_since_the_request_was_placed_is_a_rivals() -> None:
    # The holder stored its turn and let go before this request claimed: the latest row
    # seen of the conversation goes on past the tip.
    cache = PrefixCache()
    cache.saw(Conversation("t", "c", None, 0, 6, 1, {}, 0.0), root_path("t", "c"))
    tips = TipClaims(cache)
    assert tips.claim(("t", "c", 4), 5) is Claim.RIVAL  # a rival come late
    assert tips.claim(("t", "c", 4), 7) is Claim.HELD  # goes on past the row seen
    assert tips.claim(("t", "c", 6), 7) is Claim.HELD  # the tip of the row seen
    assert len(tips) == 2
