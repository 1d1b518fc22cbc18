"""benchmarks/_ablations.py through short_profile.py: each experiment takes out what it
says, and the short chats still run (in a subprocess: the experiments patch the app)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import _servers
from benchmarks.short_profile import WARM_UP

SHORT_PROFILE = Path(__file__).resolve().parents[2] / "benchmarks" / "short_profile.py"


MEASURED = 40
# Every request, warm-up included, stores a question and an answer; each chat has
# SHORT_TURNS turns (2 clients: the requests split evenly into whole chats).
REQUESTS = WARM_UP + MEASURED
CHATS = REQUESTS // _servers.SHORT_TURNS


def _run(tmp_path: Path, ablate: str) -> tuple[int, int]:
    """(message pages, conversations) stored by the short-chat requests."""
    db = tmp_path / f"{ablate}.db"
    done = subprocess.run(
        [sys.executable, str(SHORT_PROFILE), "--requests", str(MEASURED), "--clients", "2",
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
    assert pages == 2 * REQUESTS
    assert conversations == CHATS


@pytest.mark.parametrize("ablate", ["store", "append", "sql"])
def test_the_pages_are_not_stored_but_the_chats_go_on(tmp_path: Path, ablate: str) -> None:
    pages, conversations = _run(tmp_path, ablate)
    assert pages == 0
    # Later turns still continue their chat (not a new conversation every request): the
    # row moved on in memory.
    assert conversations == CHATS


def test_reads_taken_out_still_stores_every_message(tmp_path: Path) -> None:
    assert _run(tmp_path, "reads") == (2 * REQUESTS, CHATS)


def test_tee_stores_nothing_and_the_chats_are_answered(tmp_path: Path) -> None:
    assert _run(tmp_path, "tee") == (0, 0)
