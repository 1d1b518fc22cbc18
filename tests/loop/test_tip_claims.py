"""proxy.loop.tip_claims: one turn in flight per conversation tip; its next turn is no rival."""

from __future__ import annotations

from proxy.loop.tip_claims import TipClaims


def test_a_tip_is_claimed_once_until_released() -> None:
    tips = TipClaims()
    assert tips.claim(("t", "c", 4), 5)
    assert not tips.claim(("t", "c", 4), 5)  # another request placed there meanwhile
    assert tips.claim(("t", "c", 6), 7) and tips.claim(("other", "c", 4), 5)
    tips.release(("t", "c", 4))
    assert tips.claim(("t", "c", 4), 5)
    tips.release(("t", "c", 4))
    tips.release(("t", "c", 6))
    tips.release(("other", "c", 4))
    tips.release(("other", "c", 4))  # released twice: harmless
    assert len(tips) == 0


def test_a_request_longer_than_the_holders_is_its_next_turn_not_a_rival() -> None:
    tips = TipClaims()
    assert tips.claim(("t", "c", 4), 5)  # the history of 4, and a question
    assert tips.rival(("t", "c", 4), 5)  # the same history, another question
    assert not tips.rival(("t", "c", 4), 7)  # the holder's question, its answer, the next
    assert not tips.rival(("t", "c", 6), 5)  # a tip nobody holds
