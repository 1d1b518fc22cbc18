"""The chat harness: the judge, the baselines' packing, the agent model's behaviours and a
quick run through the proxy."""

from __future__ import annotations

import asyncio
import json

import pytest

from benchmarks.recall.chat import longmemeval
from benchmarks.recall.chat.agent import AgentModel, exchange_problems
from benchmarks.recall.chat.drive import Options, run_baseline, run_proxy
from benchmarks.recall.chat.packing import BASELINES, Corpus
from benchmarks.recall.chat.types import Evidence, Question, judge
from benchmarks.recall.counting import count_prompt
from benchmarks.recall.dialogue.generate import generate_dialogue


@pytest.fixture(scope="module")
def chat():  # type: ignore[no-untyped-def]
    return generate_dialogue(11, 0, sessions=10, probes=8)


def _question(kind: str = "single", date: bool = False) -> Question:
    return Question(
        kind, "What is the name of Maya's dog?", "Biscuit", ("Maya dog name",),
        (Evidence(3, ("named him Biscuit",)),),
        Evidence(1, ("8 May 2023",)) if date else None,
    )  # fmt: skip


def test_judge_needs_every_evidence_and_reports_the_date_apart() -> None:
    question = _question("temporal", date=True)
    assert judge(question, "we   named him\nBiscuit!").recalled
    assert not judge(question, "we named him Biscuit!").with_date
    assert judge(question, "[8 May 2023] ... named him Biscuit").with_date
    assert not judge(question, "named him Pickles").recalled
    either = Evidence(-1, ("first wording", "second wording"))
    assert either.seen_in("x second wording y")


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("budget", [1500, 4096])
def test_baselines_fill_the_budget_and_stay_within_it(chat, name: str, budget: int) -> None:  # type: ignore[no-untyped-def]
    corpus = Corpus(chat.messages)
    for question in chat.questions:
        body = BASELINES[name](corpus, question.question, budget, 256)
        used = count_prompt(body["messages"])
        assert used <= budget - 256
        assert body["messages"][0] == chat.messages[0]
        assert body["messages"][-1] == {"role": "user", "content": question.question}
        left = budget - 256 - used
        packed = {id(m) for m in body["messages"]}
        if name == "truncation":
            first = len(chat.messages) - (len(body["messages"]) - 2)
            assert corpus.costs[first - 1] > left
            continue
        span = 2 if name == "bm25_next" else 1
        # filled: no hit left out would have fitted in what is left
        for position, _ in corpus.index.search(question.question, len(corpus.index)):
            unit = [p for p in range(position, min(position + span, len(chat.messages)))
                    if id(chat.messages[p]) not in packed]  # fmt: skip
            assert not unit or sum(corpus.costs[p] for p in unit) > left


def test_bm25_next_brings_the_message_after_each_hit(chat) -> None:  # type: ignore[no-untyped-def]
    corpus = Corpus(chat.messages)
    question = chat.questions[0].question
    body = BASELINES["bm25_next"](corpus, question, 4096, 256)
    best, _ = corpus.index.search(question, 1)[0]
    packed = body["messages"][1:-1]
    assert chat.messages[best] in packed and chat.messages[best + 1] in packed


def _tool_turn(results: list[str]) -> list[dict]:
    call = {"id": "c1", "type": "function",
            "function": {"name": "search_pages", "arguments": '{"query": "q"}'}}  # fmt: skip
    content = json.dumps({"results": [{"id": r, "hint": ""} for r in results]})
    return [
        {"role": "user", "content": "What is the name of Maya's dog?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": content},
    ]


def _tools() -> list[dict]:
    return [{"type": "function", "function": {"name": n}} for n in ("page_fault", "search_pages")]


def test_the_question_behaviour_searches_then_faults_the_top_three() -> None:
    model = AgentModel()
    model.ask("question", "What is the name of Maya's dog?", ("Maya dog",))
    first = model.respond({"messages": _tool_turn([])[:1], "tools": _tools()})
    assert json.loads(first["tool_calls"][0]["function"]["arguments"]) == {
        "query": "What is the name of Maya's dog?", "limit": 5}  # fmt: skip
    second = model.respond({"messages": _tool_turn(["msg_1", "msg_2", "msg_3", "msg_4"]),
                            "tools": _tools()})  # fmt: skip
    faults = [json.loads(c["function"]["arguments"]) for c in second["tool_calls"]]
    assert faults == [{"page_id": f"msg_{n}", "target_level": 0} for n in (1, 2, 3)]
    assert model.log[-1].action == "fault"


def test_the_none_behaviour_answers_at_once_and_keeps_what_it_saw() -> None:
    model = AgentModel()
    model.ask("none", "q", ("q",))
    reply = model.respond({"messages": [{"role": "user", "content": "q"}], "tools": _tools()})
    assert reply["content"] and model.log[-1].action == "answer" and model.log[-1].visible


def test_split_tool_exchanges_are_found() -> None:
    turn = _tool_turn(["msg_1"])
    assert exchange_problems(turn) == []
    assert exchange_problems(turn[:2]) == ["tool call without its result"]
    assert exchange_problems([turn[0], turn[2]]) == ["tool result c1 without its call"]


def test_a_quick_run_through_the_proxy_judges_every_question(chat) -> None:  # type: ignore[no-untyped-def]
    corpus = Corpus(chat.messages)
    for behaviour in ("question", "none"):
        records, feed = asyncio.run(run_proxy(chat, corpus, 2000, behaviour, Options()))
        assert len(records) == len(chat.questions)
        assert feed.requests == sum(m["role"] == "assistant" for m in chat.messages)
        assert feed.paged > 0 and feed.prefix_share is not None
        assert not any(r.leaked or r.split or r.notes for r in records)
        if behaviour == "question":
            assert all(r.searches == 1 for r in records)
    records, feed = run_baseline("bm25", chat, corpus, 2000, Options())
    assert len(records) == len(chat.questions) and feed.requests == feed.requests


def test_the_cli_quick_mode_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    from benchmarks.recall.__main__ import main

    assert main(["--dataset", "dialogue", "--quick", "--behaviours", "none"]) == 0
    out = capsys.readouterr().out
    assert "| dialogue | proxy | none |" in out and "bm25_next" in out


needs_data = pytest.mark.skipif(
    longmemeval.available() is not None, reason=str(longmemeval.available())
)


@needs_data
def test_longmemeval_evidence_is_text_of_the_labelled_sessions() -> None:
    chats = longmemeval.load()
    assert len(chats) == 3
    for chat in chats:
        assert chat.messages[1]["content"].startswith("[Session date: ")
        for question in chat.questions:
            assert question.evidence
            for evidence in question.evidence:
                assert any(t in chat.messages[evidence.position]["content"]
                           for t in evidence.texts)  # fmt: skip
    first = chats[0].questions[0]
    assert first.kind == "knowledge-update" and len(first.evidence) == 2
    assert any("$350,000" in t for t in first.evidence[0].texts)
    # an added question whose labelled session is about something else is left out
    assert any("Frank Lloyd" in reason for reason in chats[0].excluded)


@needs_data
def test_longmemeval_keywords_come_from_the_question() -> None:
    from proxy.vm.bm25 import search_tokens

    for chat in longmemeval.load():
        for question in chat.questions:
            (query,) = question.keywords
            assert set(search_tokens(query)) <= set(search_tokens(question.question))
