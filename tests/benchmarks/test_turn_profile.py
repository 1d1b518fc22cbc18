"""benchmarks/turn_profile.py: the stored history is kept for the next run, and the turns
after it are what is profiled."""

from __future__ import annotations

import pstats
from pathlib import Path

from benchmarks import turn_profile


async def test_the_history_is_kept_then_turns_are_profiled(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    await turn_profile.run(1, "on", db, None)
    assert db.exists()
    profile = tmp_path / "turns.prof"
    await turn_profile.run(1, "on", db, profile)
    names = {name for _, _, name in pstats.Stats(str(profile)).stats}  # type: ignore[attr-defined]
    assert "pack_request" in names  # a memory-active turn was profiled
