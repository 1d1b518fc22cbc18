"""Adding the chat datasets' records up, per dataset x system x behaviour x budget, and
presenting them: a table of recall and cost, recall by kind, and the no-regression block.

- recall: every evidence of the question visible in the request the model answered from;
  `+date` also requires a temporal question's session date (other kinds as recall);
- budget used: the first upstream prompt of each question over what the budget leaves
  after the reply (`budget - max_tokens`), averaged;
- sent / full: prompt tokens sent per question (all its round trips) against the whole
  history plus the question as one prompt;
- prefix share: per history turn, the longest common prefix of its upstream prompt with
  the previous turn's over its length (characters of the serialised tools + messages),
  averaged over the turns the proxy paged (baselines: every turn);
- no regression: the largest upstream request (prompt + max_tokens) of questions and
  history, how many passed the budget, tool calls that reached the client, and requests
  that split a tool exchange.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import mean
from typing import Any

from benchmarks.recall.chat.drive import FeedRecord, QuestionRecord

SYSTEM_ORDER = {"proxy": 0, "proxy+onnx": 0.5, "bm25_next": 1, "bm25": 2, "truncation": 3}


@dataclass
class ChatRow:
    dataset: str
    system: str
    behaviour: str
    budget: int
    questions: int
    recall: float
    recall_dated: float
    by_kind: dict[str, float] = field(default_factory=dict)
    faults_per_question: float = 0.0
    searches_per_question: float = 0.0
    round_trips_per_question: float = 0.0
    first_prompt_tokens: float = 0.0
    budget_used: float = 0.0
    tokens_sent_per_question: float = 0.0
    full_tokens_per_question: float = 0.0
    prefix_share: float | None = None
    history_tokens_sent: int = 0
    history_full_tokens: int = 0
    max_request_tokens: int = 0
    over_budget: int = 0
    leaked: int = 0
    split: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(record: QuestionRecord | FeedRecord) -> tuple[str, str, str, int]:
    return (record.dataset, record.system, record.behaviour, record.budget)


def summarize(
    records: Sequence[QuestionRecord], feeds: Sequence[FeedRecord], reply_tokens: int
) -> list[ChatRow]:
    groups: dict[tuple[str, str, str, int], list[QuestionRecord]] = defaultdict(list)
    for record in records:
        groups[_key(record)].append(record)
    fed: dict[tuple[str, str, str, int], list[FeedRecord]] = defaultdict(list)
    for feed in feeds:
        fed[_key(feed)].append(feed)
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[3], SYSTEM_ORDER.get(k[1], 9), k[2])):
        group, feeds_of = groups[key], fed.get(key, [])
        kinds: dict[str, list[bool]] = defaultdict(list)
        for record in group:
            kinds[record.kind].append(record.recalled)
            if record.kind == "temporal":
                kinds["temporal+date"].append(record.with_date)
        shares = [f.prefix_share for f in feeds_of if f.prefix_share is not None]
        room = key[3] - reply_tokens
        rows.append(ChatRow(
            dataset=key[0], system=key[1], behaviour=key[2], budget=key[3],
            questions=len(group),
            recall=mean(r.recalled for r in group),
            recall_dated=mean(r.with_date for r in group),
            by_kind={k: mean(v) for k, v in sorted(kinds.items())},
            faults_per_question=mean(r.faults for r in group),
            searches_per_question=mean(r.searches for r in group),
            round_trips_per_question=mean(r.round_trips for r in group),
            first_prompt_tokens=mean(r.first_prompt_tokens for r in group),
            budget_used=mean(r.first_prompt_tokens / room for r in group),
            tokens_sent_per_question=mean(r.tokens_sent for r in group),
            full_tokens_per_question=mean(r.full_tokens for r in group),
            prefix_share=mean(shares) if shares else None,
            history_tokens_sent=sum(f.tokens_sent for f in feeds_of),
            history_full_tokens=sum(f.full_tokens for f in feeds_of),
            max_request_tokens=max([r.max_request_tokens for r in group]
                                   + [f.max_request_tokens for f in feeds_of]),
            over_budget=sum(r.over_budget for r in group) + sum(f.over_budget for f in feeds_of),
            leaked=sum(r.leaked for r in group),
            split=sum(r.split for r in group) + sum(f.split for f in feeds_of),
            notes=sorted({r.notes for r in group if r.notes}
                         | {n for f in feeds_of for n in f.notes}),
        ))  # fmt: skip
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def table(rows: Sequence[ChatRow]) -> str:
    head = ("| dataset | system | behaviour | budget | questions | recall | +date | faults/q "
            "| searches/q | round trips/q | first prompt (budget used) | sent/q | full/q "
            "| prefix share |")  # fmt: skip
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        lines.append(
            f"| {r.dataset} | {r.system} | {r.behaviour} | {r.budget} | {r.questions} "
            f"| {_pct(r.recall)} | {_pct(r.recall_dated)} | {r.faults_per_question:.2f} "
            f"| {r.searches_per_question:.2f} | {r.round_trips_per_question:.2f} "
            f"| {r.first_prompt_tokens:,.0f} ({_pct(r.budget_used)}) "
            f"| {r.tokens_sent_per_question:,.0f} | {r.full_tokens_per_question:,.0f} "
            f"| {_pct(r.prefix_share)} |"
        )
    return "\n".join(lines)


def kind_table(rows: Sequence[ChatRow]) -> str:
    out = []
    for dataset in dict.fromkeys(r.dataset for r in rows):
        mine = [r for r in rows if r.dataset == dataset]
        kinds = list(dict.fromkeys(k for r in mine for k in r.by_kind))
        out += [f"| {dataset} | behaviour | budget | " + " | ".join(kinds) + " |",
                "|" + "---|" * (3 + len(kinds))]  # fmt: skip
        for r in mine:
            cells = " | ".join(_pct(r.by_kind.get(k)) for k in kinds)
            out.append(f"| {r.system} | {r.behaviour} | {r.budget} | {cells} |")
        out.append("")
    return "\n".join(out).rstrip()


def regression_table(rows: Sequence[ChatRow]) -> str:
    lines = ["| dataset | system | behaviour | budget | largest request (prompt + max_tokens) "
             "| over budget | VM calls reaching the client | split tool exchanges |",
             "|" + "---|" * 8]  # fmt: skip
    for r in rows:
        if not r.system.startswith("proxy"):
            continue
        lines.append(
            f"| {r.dataset} | {r.system} | {r.behaviour} | {r.budget} "
            f"| {r.max_request_tokens:,} | {r.over_budget} | {r.leaked} | {r.split} |"
        )
    return "\n".join(lines)


def section(payload: dict[str, Any], rows: Sequence[ChatRow]) -> str:
    """The Markdown section RESULTS.md takes in."""
    lines = [
        "## Recall on long dialogue and LongMemEval (`benchmarks/recall`, chat datasets)",
        "",
        f"Command: `{payload['command']}` (code: {payload.get('code', 'unknown')}, "
        f"{payload.get('seconds', 0):.0f} s)",
        "",
        table(rows),
        "",
        "Recall by kind of question (temporal+date: the session date visible too):",
        "",
        kind_table(rows),
        "",
        "No regression (proxy rows; history turns and questions):",
        "",
        regression_table(rows),
        "",
        *[f"- {note}" for note in payload.get("notes", [])],
    ]
    return "\n".join(lines) + "\n"
