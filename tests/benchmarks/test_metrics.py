"""Judging and adding up."""

from __future__ import annotations

from pathlib import Path

from benchmarks.recall import report
from benchmarks.recall.generate import Evidence, Probe
from benchmarks.recall.metrics import (
    FeedStats,
    ProbeRecord,
    answered_correctly,
    evidence_visible,
    summarize,
)

TOOL_PROBE = Probe("tool", "q", ("JD01",), (Evidence(7, '"tracking_number": "JD01"'),))
PAIR_PROBE = Probe("pair", "q", ("A", "B"), (Evidence(3, "venue is A"), Evidence(9, "time is B")))


def test_visible_tolerates_reserialised_json_but_needs_every_part() -> None:
    assert evidence_visible(TOOL_PROBE, '{"shipment":{"tracking_number":"JD01"}}')
    assert not evidence_visible(TOOL_PROBE, "JD01 somewhere else")
    assert evidence_visible(PAIR_PROBE, "the venue is A.\nthe time is B.")
    assert not evidence_visible(PAIR_PROBE, "the venue is A.")


def test_correct_needs_every_value() -> None:
    assert answered_correctly(PAIR_PROBE, "The venue is a and the time is B.")
    assert not answered_correctly(PAIR_PROBE, "The venue is A; I don't know the time.")


def _record(system: str, visible: bool, faults: int, sent: int) -> ProbeRecord:
    return ProbeRecord(
        system,
        2000,
        4000,
        "fact",
        "q",
        ("x",),
        "x",
        visible,
        visible,
        faults,
        faults + 2,
        sent,
        100_000,
        sent // 2,
    )


def test_summary_per_system_size_and_budget(tmp_path: Path) -> None:
    records = [
        _record("proxy", True, 1, 8000),
        _record("proxy", False, 2, 12000),
        _record("truncation", False, 0, 3700),
    ]
    feeds = [FeedStats("proxy", 2000, 4000, 200, 0.85, 700_000, 20_000_000)]
    rows = {r.system: r for r in summarize(records, feeds)}
    proxy = rows["proxy"]
    assert (proxy.probes, proxy.recall, proxy.faults_per_question, proxy.max_faults) == (
        2,
        0.5,
        1.5,
        2,
    )
    assert proxy.round_trips_per_question == 3.5 and proxy.token_savings == 0.9
    assert proxy.prefix_share == 0.85 and abs(proxy.feed_token_savings - 0.965) < 1e-9
    assert rows["truncation"].prefix_share is None
    lines = report.targets(list(rows.values()))
    assert "recall >= 90%: 50% — NOT met" in lines[0] and "met" in lines[1]
    report.plot(list(rows.values()), tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    page = report.results_page({"command": "x"}, list(rows.values()), tmp_path)
    assert "| 2000 | 4000 | proxy | 50% |" in page and "overhead.json" in page
