"""proxy.loop.tip_claims: one turn in flight per conversation tip."""

from __future__ import annotations

from proxy.loop.tip_claims import TipClaims


def test_a_tip_is_claimed_once_until_released() -> None:
    tips = TipClaims()
    assert tips.claim(("t", "c", 4))
    assert not tips.claim(("t", "c", 4))  # another turn placed there meanwhile
    assert tips.claim(("t", "c", 6)) and tips.claim(("other", "c", 4))
    tips.release(("t", "c", 4))
    assert tips.claim(("t", "c", 4))
    tips.release(("t", "c", 4))
    tips.release(("t", "c", 6))
    tips.release(("other", "c", 4))
    tips.release(("other", "c", 4))  # released twice: harmless
    assert len(tips) == 0
