"""The summarizer's prompt and the checking of its answer (proxy.vm.summary_prompt)."""

from __future__ import annotations

import json

import pytest

from proxy.tokens import counter_for_model
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.pages import Page
from proxy.vm.segments import SegmentJob, build_summary
from proxy.vm.summary_prompt import (
    MAX_CLAIMS,
    SYSTEM_PROMPT,
    MalformedSummary,
    SummaryPrompt,
    build_prompt,
    parse_answer,
)

COUNTER = counter_for_model("gpt-4o")
LONG = (
    "We compared three venues for the offsite. Quinta da Regaleira costs 4,000 EUR for two "
    "days and holds 40 people; the Pestana in Cascais is 5,200 EUR; the Lisbon office is "
    "free but has no room for 40. The catering from Mesa Viva adds 18 EUR a head. "
) * 2


def _segment() -> tuple[Page, dict[str, Page]]:
    messages: list[dict[str, object]] = []
    for turn in range(3):
        messages.append({"role": "user", "content": f"Question {turn}: where do we go?"})
        messages.append({"role": "assistant", "content": LONG if turn == 1 else "Noted."})
    messages.append({"role": "user", "content": "Next stretch begins."})
    result = ingest_messages(messages, first_position=0, counters=Counters(),
                             counter=COUNTER, segment_turns=3, clock=lambda: 0.0)
    pages = {p.page_id: p for p in result.pages}
    job = result.segment_jobs[0]
    summary = build_summary(job, [pages[i] for i in job.page_ids()], counter=COUNTER)
    return summary, pages


def _answer(**fields: object) -> str:
    value: dict[str, object] = {"summary": "Venues for the offsite were compared.",
                                "points": [], "abstracts": {}, "claims": []}
    value.update(fields)
    return json.dumps(value)


def test_the_prompt_lists_the_pages_by_id_and_asks_for_abstracts_of_long_ones() -> None:
    summary, pages = _segment()
    prompt = build_prompt(summary, [pages[i] for i in summary.covers])
    system, user = prompt.messages
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert "names, numbers, amounts, dates and decisions" in SYSTEM_PROMPT
    assert user["role"] == "user"
    lines = user["content"].splitlines()
    assert lines[0] == "PAGES (turns 1-3):"
    assert lines[1] == "[msg_0] user: Question 0: where do we go?"
    assert lines[4].startswith("[msg_3] assistant: We compared three venues")
    assert lines[-1] == "ABSTRACTS: msg_3"  # the one long message
    assert prompt.abstract_ids == ("msg_3",) and prompt.wants_claims
    assert prompt.source_ids == summary.covers


def test_a_rollup_reads_the_summaries_it_covers_and_asks_for_no_claims() -> None:
    summary, _ = _segment()
    job = SegmentJob("seg_9", 0, 6, depth=1, covers=(summary.page_id,))
    top = build_summary(job, [summary], counter=COUNTER)
    prompt = build_prompt(top, [summary])
    text = prompt.messages[1]["content"]
    assert f"[seg_0] summary of turns 1-3: {summary.rendering(2)}" in text
    assert "CLAIMS: none" in text
    assert not prompt.wants_claims and prompt.abstract_ids == () and prompt.source_ids == ()


def test_a_good_answer_is_parsed_with_its_ids() -> None:
    summary, pages = _segment()
    prompt = build_prompt(summary, [pages[i] for i in summary.covers])
    answer = parse_answer(
        "```json\n" + _answer(
            points=["Quinta da Regaleira: 4,000 EUR", "  Pestana   5,200 EUR "],
            abstracts={"msg_3": "Regaleira 4,000 EUR, Pestana 5,200 EUR, catering 18 EUR."},
            claims=[{"page": "msg_3", "text": "Quinta da Regaleira costs 4,000 EUR."}],
        ) + "\n```",
        prompt,
    )
    assert answer.summary == "Venues for the offsite were compared."
    assert answer.points == ("Quinta da Regaleira: 4,000 EUR", "Pestana 5,200 EUR")
    assert answer.abstracts == (
        ("msg_3", "Regaleira 4,000 EUR, Pestana 5,200 EUR, catering 18 EUR."),
    )
    assert answer.claims == (("msg_3", "Quinta da Regaleira costs 4,000 EUR."),)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Here is the summary: venues.", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (_answer(summary=""), "summary is empty"),
        (_answer(summary=None), "summary is not a string"),
        (_answer(summary="word " * 200), "summary has 200 words"),
        (_answer(points="one point"), "points is not a list"),
        (_answer(abstracts={"msg_0": "short message"}), "'msg_0', which was not asked"),
        (_answer(abstracts=["msg_3"]), "abstracts is not an object"),
        (_answer(claims=[{"page": "msg_99", "text": "The budget is 4,000 EUR."}]),
         "'msg_99', which was not asked"),
        (_answer(claims=[{"page": "msg_3", "text": "Yes."}]), "a claim is empty or too short"),
        (_answer(claims=["The budget is 4,000 EUR."]), "a claim is not an object"),
        (_answer(claims=[{"page": "msg_3", "text": f"Fact number {n} holds."}
                         for n in range(MAX_CLAIMS + 1)]), "claims has 7 items"),
    ],
)
def test_a_malformed_answer_is_refused_with_its_reason(text: str, reason: str) -> None:
    summary, pages = _segment()
    prompt = build_prompt(summary, [pages[i] for i in summary.covers])
    with pytest.raises(MalformedSummary, match=reason):
        parse_answer(text, prompt)


def test_claims_are_refused_where_none_were_asked_for() -> None:
    prompt = SummaryPrompt(messages=(), abstract_ids=(), source_ids=(), wants_claims=False)
    with pytest.raises(MalformedSummary, match="at most 0"):
        parse_answer(_answer(claims=[{"page": "seg_0", "text": "A b c d."}]), prompt)
    assert parse_answer(_answer(), prompt).claims == ()
