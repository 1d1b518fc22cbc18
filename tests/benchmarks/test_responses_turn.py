"""benchmarks/responses_turn.py: every arm's turns are memory-active (or passed through, for
the `_off` arms), streaming and not, and the answers come back to be resent."""

from __future__ import annotations

import pytest

from benchmarks import responses_turn


@pytest.mark.parametrize("stream", [False, True])
async def test_each_arm_runs_its_turns(stream: bool) -> None:
    out = await responses_turn.run(60, 3, "memory://", 2000, stream=stream)
    assert out["stream"] is stream
    for name in ("chat", "responses", "chained"):
        arm = out[name]
        assert 0 < arm["prompt_tokens_sent"] < arm["prompt_tokens_full"]  # memory active
    for name in ("chat_off", "responses_off"):
        assert out[name]["prompt_tokens_sent"] == 0  # relayed as it came: no X-VM headers
    assert out["ratio_responses_added_to_chat_added"] > 0
