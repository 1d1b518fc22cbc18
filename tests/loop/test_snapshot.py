"""A message page's snapshot (proxy.loop.derive.snapshot): what `Counters.to_dict()` holds
but its defaults and the claim bookkeeping, in the same order, and copies of what the
counters go on changing."""

from __future__ import annotations

import random
from typing import Any

from proxy.loop.derive import NOT_SNAPSHOTTED, snapshot
from proxy.vm.ingest import Counters

DEFAULTS = Counters().to_dict()


def reference(counters: Counters, tokens: int) -> dict[str, Any]:
    kept = {
        key: value for key, value in counters.to_dict().items()
        if key not in NOT_SNAPSHOTTED and value != DEFAULTS[key]
        and not (key == "derived" and value == counters.messages)
    }
    return {"tokens": tokens, "counters": kept}


def random_counters(rnd: random.Random) -> Counters:
    return Counters(
        messages=rnd.randint(0, 5), turns=rnd.randint(0, 3), images=rnd.choice([0, 2]),
        claims=rnd.choice([0, 7]), segments=rnd.choice([0, 1]),
        segment_from=rnd.choice([0, 4]), segment_from_turn=rnd.choice([0, 2]),
        rollups=rnd.choice([[], [["s1"]], [["s1", "s2"], []]]),
        open_calls=rnd.choice([{}, {"call_1": "f"}]), recent_claims=rnd.choice([[], ["c"]]),
        preamble=rnd.randint(0, 2), user_positions=rnd.choice([[], [1, 3]]),
        claim_keys=rnd.choice([[], ["k"]]), said=rnd.choice(["", "2024-01-02"]),
        derived=rnd.choice([-1, 0, 3, 5]),
    )


def test_a_snapshot_keeps_what_differs_from_a_new_conversation_in_to_dict_order() -> None:
    rnd = random.Random(15)
    for _ in range(2000):
        counters = random_counters(rnd)
        made = snapshot(counters, 42)
        expected = reference(counters, 42)
        assert made == expected
        assert list(made["counters"]) == list(expected["counters"])


def test_a_snapshot_does_not_change_with_the_counters_after_it() -> None:
    counters = Counters(messages=2, rollups=[["s1"]], open_calls={"call_1": "f"},
                        user_positions=[0])
    made = snapshot(counters, 7)
    counters.rollups[0].append("s2")
    counters.open_calls["call_2"] = "g"
    counters.user_positions.append(1)
    assert made["counters"]["rollups"] == [["s1"]]
    assert made["counters"]["open_calls"] == {"call_1": "f"}
    assert made["counters"]["user_positions"] == [0]
