"""Presenting results: a table on stdout, `recall.json`, a PNG plot, and the results page
`RESULTS.md`, which also takes in the other benchmarks' JSON found next to it
(`overhead.json`, `prepare.json`, `store.json`, `litellm.json`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.recall.metrics import Row

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
# (file, section title, the command that writes the file)
OTHER_RESULTS = (
    ("overhead.json", "Proxy overhead (pass-through)",
     "python benchmarks/overhead.py --json benchmarks/results/overhead.json"),
    ("litellm.json", "LiteLLM proxy, same method as the overhead benchmark",
     "python -m benchmarks.recall.litellm_overhead --litellm PATH --json "
     "benchmarks/results/litellm.json"),
    ("prepare.json", "Request preparation (VM core)",
     "python benchmarks/prepare.py --json benchmarks/results/prepare.json"),
    ("vm_turn.json", "One VM turn against a pass-through turn",
     "python benchmarks/vm_turn.py --json benchmarks/results/vm_turn.json"),
    ("stream_ttft.json", "Time to first token, streaming",
     "python benchmarks/stream_ttft.py --json benchmarks/results/stream_ttft.json"),
    ("store.json", "Page store", "python benchmarks/store.py --json benchmarks/results/store.json"),
)  # fmt: skip
TARGET_SIZE, TARGET_BUDGET = 2000, 4000


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def table(rows: Sequence[Row]) -> str:
    head = (
        "| turns | budget | system | recall | accuracy | faults/q (max) | round trips/q "
        "| tokens sent/q | full history | saved | feed saved | prefix share |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r.size} | {r.budget} | {r.system} | {_pct(r.recall)} | {_pct(r.accuracy)} "
            f"| {r.faults_per_question:.2f} ({r.max_faults}) | {r.round_trips_per_question:.2f} "
            f"| {r.tokens_per_question:,.0f} | {r.full_tokens_per_question:,.0f} "
            f"| {_pct(r.token_savings)} | {_pct(r.feed_token_savings)} | {_pct(r.prefix_share)} |"
        )
    return "\n".join(lines)


def kind_table(rows: Sequence[Row]) -> str:
    kinds = sorted({k for r in rows for k in r.recall_by_kind})
    lines = [
        "| turns | budget | system | " + " | ".join(kinds) + " |",
        "|" + "---|" * (3 + len(kinds)),
    ]
    for r in rows:
        cells = " | ".join(_pct(r.recall_by_kind.get(k)) for k in kinds)
        lines.append(f"| {r.size} | {r.budget} | {r.system} | {cells} |")
    return "\n".join(lines)


def divergence_table(feeds: Sequence[dict[str, Any]]) -> str:
    """Where each history prompt of the proxy first differs from the one before it."""
    found = [f for f in feeds if f.get("divergence")]
    sections = list(dict.fromkeys(s for f in found for s in f["divergence"]))
    if not found:
        return ""
    lines = [
        "| turns | budget | " + " | ".join(sections) + " |",
        "|" + "---|" * (2 + len(sections)),
    ]
    for f in found:
        cells = " | ".join(_pct(f["divergence"].get(s, 0.0)) for s in sections)
        lines.append(f"| {f['size']} | {f['budget']} | {cells} |")
    return "\n".join(lines)


def targets(rows: Sequence[Row]) -> list[str]:
    """The issue's targets at 4k budget on 2k-turn conversations, met or by how much not."""
    found = {r.system: r for r in rows if r.size == TARGET_SIZE and r.budget == TARGET_BUDGET}
    proxy = found.get("proxy")
    if proxy is None:
        where = f"{TARGET_SIZE} turns and a {TARGET_BUDGET}-token budget"
        return [f"No proxy run at {where}: targets not checked."]
    checks = [
        ("recall >= 90%", proxy.recall, 0.90, True),
        ("faults per question <= 2", proxy.faults_per_question, 2.0, False),
        ("prompt tokens sent >= 90% below full history", proxy.token_savings, 0.90, True),
        ("prefix share >= 80%", proxy.prefix_share or 0.0, 0.80, True),
    ]
    lines = []
    for name, value, goal, higher in checks:
        met = value >= goal if higher else value <= goal
        shown = f"{value:.2f}" if not higher else _pct(value)
        gap = f"{abs(goal - value):.2f}" if not higher else f"{100 * abs(goal - value):.0f} points"
        lines.append(f"- {name}: {shown} — {'met' if met else f'NOT met, {gap} short'}")
    if proxy.unpaged:
        lines.append(
            f"- caution: {proxy.unpaged} of {proxy.probes} questions were not paged "
            "(the proxy passed the full history through)"
        )
    truncation = found.get("truncation")
    if truncation is not None:
        lines.append(f"- truncation recall at the same point: {_pct(truncation.recall)}")
    return lines


def plot(rows: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"proxy": "tab:blue", "bm25": "tab:green", "truncation": "tab:red"}
    styles = ["-", "--", ":", "-."]
    budgets = sorted({r.budget for r in rows})
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for system in sorted({r.system for r in rows}):
        for index, budget in enumerate(budgets):
            points = sorted((r.size, r) for r in rows if r.system == system and r.budget == budget)
            if not points:
                continue
            sizes = [s for s, _ in points]
            style = dict(
                color=colors.get(system, "gray"), linestyle=styles[index % len(styles)], marker="o"
            )
            label = f"{system}, {budget // 1000}k budget"
            left.plot(sizes, [100 * r.recall for _, r in points], label=label, **style)
            right.plot(sizes, [r.tokens_per_question for _, r in points], label=label, **style)
    full = sorted({(r.size, r.full_tokens_per_question) for r in rows})
    right.plot(
        [s for s, _ in full], [t for _, t in full], color="black", marker="s", label="full history"
    )
    left.set(
        title="Recall (evidence visible when answering)",
        xlabel="conversation length (turns)",
        ylabel="recall (%)",
        ylim=(-5, 105),
    )
    right.set(
        title="Prompt tokens sent per question",
        xlabel="conversation length (turns)",
        ylabel="tokens (log)",
        yscale="log",
    )
    sizes = sorted({r.size for r in rows})
    for axis in (left, right):
        axis.grid(alpha=0.3)
        if sizes and sizes[-1] >= 5 * sizes[0]:
            axis.set_xscale("log")
    left.legend(fontsize=7, loc="center right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_json(payload: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def _other_section(title: str, data: Any) -> list[str]:
    lines = [f"## {title}", ""]
    if isinstance(data, dict) and data.get("skipped"):
        return lines + [f"Skipped: {data['skipped']}", ""]
    rows = data.get("rows") if isinstance(data, dict) else data
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        keys = list(dict.fromkeys(k for r in rows for k in r))
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]
    else:
        lines += ["```json", json.dumps(data, indent=2)[:4000], "```"]
    if isinstance(data, dict):
        for key in ("command", "note", "notes"):
            if data.get(key):
                lines += ["", f"{key}: {data[key]}"]
    return lines + [""]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def results_page(recall: dict[str, Any], rows: Sequence[Row], directory: Path) -> str:
    lines = [
        "# vm-proxy benchmark results",
        "",
        "Figures from a 2-core machine shared with other work: timings are noisy; ratios and",
        "recall figures are deterministic for a given seed.",
        "",
        "## Recall and token savings (`benchmarks/recall`)",
        "",
        f"Command: `{recall['command']}` (code: {recall.get('code', 'unknown')})",
        "",
        "![recall and tokens sent](recall.png)",
        "",
        table(rows),
        "",
        *[f"- {r.system}, {r.size} turns, {r.budget} budget: {r.notes}" for r in rows if r.notes],
        *[
            f"- {r.system}, {r.size} turns, {r.budget} budget: {r.unpaged} questions not paged"
            for r in rows
            if r.unpaged
        ],
        "",
        "Recall by kind of probe:",
        "",
        kind_table(rows),
        "",
        f"Targets at {TARGET_BUDGET // 1000}k budget, {TARGET_SIZE} turns:",
        "",
        *targets(rows),
        "",
        *[f"- {note}" for note in recall.get("notes", [])],
        "",
    ]
    divergence = divergence_table(recall.get("feeds", []))
    if divergence:
        lines += [
            "Where each proxy history prompt first differs from the previous one "
            "(last history turns):",
            "",
            divergence,
            "",
        ]
    dialogue = directory / "recall_dialogue.md"
    if dialogue.exists():
        lines += [dialogue.read_text().strip(), ""]
    analysis = directory / "recall_analysis.md"
    if analysis.exists():
        lines += [analysis.read_text().strip(), ""]
    for name, title, command in OTHER_RESULTS:
        path = directory / name
        if path.exists():
            lines += _other_section(title, json.loads(path.read_text()))
            lines += [f"Made by: `{command}`", ""]
        else:
            lines += [f"## {title}", "", f"Not measured in this page: `{command}` writes it.", ""]
    return "\n".join(lines)


def refresh_results_page(directory: Path) -> None:
    """Rewrites RESULTS.md from the JSON already there (no new plot), e.g. after the chat
    datasets wrote their section."""
    path = directory / "recall.json"
    if not path.exists():
        return
    payload = json.loads(path.read_text())
    rows = [Row(**row) for row in payload["rows"]]
    (directory / "RESULTS.md").write_text(results_page(payload, rows, directory))
