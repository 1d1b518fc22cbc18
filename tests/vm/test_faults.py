from __future__ import annotations

import json

import pytest

from proxy.tokens import counter_for_model
from proxy.vm.faults import (
    FaultState,
    ToolArgumentError,
    handle_page_fault,
    ids_to_load,
    near_ids,
    parse_search_arguments,
    render_search_results,
)
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.pages import Modality, Page
from proxy.vm.search_rank import RankedHit
from tests.vm.conversations import long_conversation

COUNTER = counter_for_model("gpt-4o")
PAGES: dict[str, Page] = {
    p.page_id: p
    for p in ingest_messages(
        long_conversation(12),
        first_position=0,
        counters=Counters(),
        counter=COUNTER,
        segment_turns=100,
        clock=lambda: 0.0,
    ).pages
}


def state(**kw: int) -> FaultState:
    return FaultState(
        max_faults=kw.get("faults", 4), max_tokens=kw.get("tokens", 4000), turn=9, clock=lambda: 2.0
    )


def call(page_id: object, level: object = None) -> str:
    args: dict[str, object] = {"page_id": page_id}
    if level is not None:
        args["target_level"] = level
    return json.dumps(args)


def test_fault_returns_the_page_at_the_level_asked_with_the_turns_around_it() -> None:
    s = state()
    outcome = handle_page_fault(call("msg_5", 0), PAGES, s)
    body = json.loads(outcome.result_json)
    page, before, after = PAGES["msg_5"], PAGES["msg_4"], PAGES["msg_6"]
    assert outcome.ok and outcome.page is page and outcome.level == 0
    # The neighbours are long: they come as abstracts, and count as seen, not as faults.
    assert body == {
        "id": "msg_5",
        "level": 0,
        "content": "\n".join([
            "[msg_4] assistant (abstract): " + before.rendering(2),
            "[msg_5] user: " + page.text,
            "[msg_6] assistant (abstract): " + after.rendering(2),
        ]),
    }
    assert s.faults == 1 and s.in_view == {"msg_5": 0, "msg_4": 2, "msg_6": 2}
    assert s.tokens == page.tokens[0] + before.tokens[2] + after.tokens[2]
    assert s.spent > s.tokens  # the JSON and the line headers grow the prompt too
    assert outcome.mutation is not None
    assert (outcome.mutation.event, outcome.mutation.level, outcome.mutation.turn) == (
        "fault",
        0,
        9,
    )
    default = json.loads(handle_page_fault(call("msg_8"), PAGES, s).result_json)
    assert default["level"] == 2
    assert "[msg_8] assistant (abstract): " + PAGES["msg_8"].rendering(2) in default["content"]
    summary = json.loads(handle_page_fault(call("claim_0", 0), PAGES, s).result_json)
    assert summary == {"id": "claim_0", "level": 0, "type": "claim",
                       "content": PAGES["claim_0"].text}


@pytest.mark.parametrize(("given", "served"), [(-3, 0), (7, 3), ("1", 1), ("high", 2), (True, 2)])
def test_level_is_clamped(given: object, served: int) -> None:
    outcome = handle_page_fault(call("msg_5", given), lambda pid: PAGES.get(pid), state())
    assert outcome.level == served


@pytest.mark.parametrize(
    "arguments", ["not json", "[1]", "{}", '{"page_id": 12}', '{"page_id": " "}']
)
def test_bad_arguments(arguments: str) -> None:
    outcome = handle_page_fault(arguments, PAGES, state())
    assert (
        outcome.code == "bad_arguments"
        and json.loads(outcome.result_json)["code"] == "bad_arguments"
    )


def test_unknown_id_answers_with_near_matches() -> None:
    outcome = handle_page_fault(call("msg_500"), PAGES, state(), known_ids=["msg_24", "msg_3"])
    body = json.loads(outcome.result_json)
    assert outcome.code == "unknown_id" and body["near"] == ["msg_24", "msg_3"]
    near = near_ids("msg_25", PAGES)
    assert near[:2] == ["msg_24", "claim_2"] or near[0] == "msg_24"
    assert "msg_24" in near and all(pid in PAGES for pid in near)
    assert (
        json.loads(handle_page_fault(call("seg_99"), PAGES, state()).result_json)["code"]
        == "unknown_id"
    )


def test_loose_spellings_of_an_id_are_understood() -> None:
    for spelled in ["MSG_5", "msg-5", "msg 5", "message_5"]:
        outcome = handle_page_fault(call(spelled), PAGES, state())
        assert outcome.ok and outcome.page is PAGES["msg_5"]


def test_already_mapped_is_not_resent_but_upgrades_are_allowed() -> None:
    s = state()
    s.in_view = {"msg_5": 2, "msg_7": 0}
    assert handle_page_fault(call("msg_7", 1), PAGES, s).code == "already_mapped"
    assert handle_page_fault(call("msg_5", 2), PAGES, s).code == "already_mapped"
    assert handle_page_fault(call("msg_5", 0), PAGES, s).ok


def test_repeated_identical_call() -> None:
    s = state()
    assert handle_page_fault('{"page_id": "msg_5", "target_level": 1}', PAGES, s).ok
    again = handle_page_fault('{"target_level": 1, "page_id": "msg_5"}', PAGES, s)
    assert again.code == "repeated_call"


def test_limits_per_turn() -> None:
    s = state(faults=2)
    assert handle_page_fault(call("msg_1"), PAGES, s).ok
    assert handle_page_fault(call("msg_5"), PAGES, s).ok
    assert s.exhausted
    assert handle_page_fault(call("msg_3"), PAGES, s).code == "limit_reached"
    page = PAGES["msg_4"]
    s = state(tokens=page.tokens[1])
    outcome = handle_page_fault(call("msg_4", 0), PAGES, s)
    body = json.loads(outcome.result_json)
    assert outcome.ok and body["level"] == 1 and "note" in body
    s = state(tokens=page.tokens[3] - 1)
    assert handle_page_fault(call("msg_4", 0), PAGES, s).code == "limit_reached"


def test_ids_to_load_for_store_backed_callers() -> None:
    ids = ids_to_load(call("msg_10"))
    assert ids[0] == "msg_10" and "msg_9" in ids and "msg_13" in ids and "seg_10" in ids
    assert ids_to_load("nope") == []


def test_search_arguments() -> None:
    assert parse_search_arguments('{"query": " lisbon "}').query == "lisbon"
    args = parse_search_arguments('{"query": "x", "limit": 99, "modality": "IMAGE"}')
    assert args.limit == 20 and args.modality is Modality.IMAGE
    assert parse_search_arguments('{"query": "x", "limit": 0}').limit == 1
    assert parse_search_arguments('{"query": "x", "limit": "3"}').limit == 3
    for bad in ['{"limit": 3}', '{"query": ""}', "[]", '{"query": "x", "modality": "smell"}']:
        with pytest.raises(ToolArgumentError) as info:
            parse_search_arguments(bad)
        assert json.loads(info.value.result_json)["code"] == "bad_arguments"


def test_search_results_name_who_and_show_the_passage_that_matched() -> None:
    hits = [RankedHit(PAGES["msg_5"], 7.12345), RankedHit(PAGES["claim_0"], 3.0)]
    terms = ["bake", "steam"]
    strict = json.loads(render_search_results("bake with steam", hits, "strict", terms))
    assert [r["id"] for r in strict["results"]] == ["msg_5", "claim_0"]
    assert all(set(r) == {"id", "hint"} for r in strict["results"])
    first = strict["results"][0]["hint"]
    # Not the message's first words: the sentence about baking, who said it first.
    assert first.startswith("user: ") and "Bake at 250 degrees with steam" in first
    assert not first.removeprefix("user: ").startswith(PAGES["msg_5"].text[:20])
    assert strict["results"][1]["hint"].startswith("claim: ")
    relaxed = json.loads(render_search_results("bake with steam", hits, "relaxed", terms))
    assert len(relaxed["results"][0]["hint"]) >= len(first)
