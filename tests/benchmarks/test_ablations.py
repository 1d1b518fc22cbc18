"""benchmarks/_ablations.py through short_profile.py: each experiment takes out what it
says, and the short chats still run (in a subprocess: the experiments patch the app)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SHORT_PROFILE = Path(__file__).resolve().parents[2] / "benchmarks" / "short_profile.py"


def _run(tmp_path: Path, ablate: str) -> tuple[int, int]:
    """(message pages, conversations) stored by 40 short-chat requests."""
    db = tmp_path / f"{ablate}.db"
    done = subprocess.run(
        [sys.executable, str(SHORT_PROFILE), "--requests", "40", "--clients", "2",
         "--store", f"sqlite:///{db}", "--ablate", ablate],
        capture_output=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    with sqlite3.connect(db) as conn:
        pages = conn.execute("SELECT count(*) FROM pages").fetchone()[0]
        conversations = conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
    return pages, conversations


def test_nothing_taken_out_stores_every_message(tmp_path: Path) -> None:
    pages, conversations = _run(tmp_path, "none")
    # 104 requests (64 to warm up), 4 turns a chat of 2 clients: each request a question
    # and an answer stored.
    assert pages == 2 * 104
    assert conversations == 104 // 4


@pytest.mark.parametrize("ablate", ["store", "append", "sql"])
def test_the_pages_are_not_stored_but_the_chats_go_on(tmp_path: Path, ablate: str) -> None:
    pages, conversations = _run(tmp_path, ablate)
    assert pages == 0
    # Later turns still continue their chat (a new conversation every request would be
    # 104): the row moved on in memory.
    assert conversations == 104 // 4


def test_reads_taken_out_still_stores_every_message(tmp_path: Path) -> None:
    assert _run(tmp_path, "reads") == (2 * 104, 104 // 4)
