"""benchmarks/vm_turn.py --against: another revision measured in the same run, from a
worktree that is gone afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _worktrees() -> str:
    return subprocess.run(["git", "-C", str(REPO), "worktree", "list", "--porcelain"],
                          check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_against_a_revision_measures_both_and_leaves_no_worktree(tmp_path: Path) -> None:
    before = _worktrees()
    out = tmp_path / "against.json"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "vm_turn.py"), "--against", "HEAD",
         "--turns", "30", "--requests", "3", "--budget", "1000", "--store", "memory://",
         "--json", str(out)],
        check=True, capture_output=True, timeout=300,
    )
    result = json.loads(out.read_text())
    assert result["against"] == "HEAD"
    [summary] = result["summary"]
    assert summary["store"] == "memory" and summary["after_over_before"] > 0
    assert [len(rows) for rows in result["rows"].values()] == [1, 1]
    for rows in result["rows"].values():
        assert rows[0]["prompt_tokens_sent"] < rows[0]["prompt_tokens_full"]  # memory ran
    assert _worktrees() == before
