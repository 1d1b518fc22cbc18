from __future__ import annotations

from dataclasses import replace
from typing import Any

from proxy.tokens import counter_for_model
from proxy.vm.context import line_tokens
from proxy.vm.excerpt import excerpt
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page, PageKind
from proxy.vm.working_set import NEIGHBOUR, Chooser, ScoredPage, Selection
from tests.vm.conversations import long_conversation

COUNTER = counter_for_model("gpt-4o")
PAGES: dict[str, Page] = {
    p.page_id: p
    for p in ingest_messages(
        long_conversation(30),
        first_position=0,
        counters=Counters(),
        counter=COUNTER,
        segment_turns=100,
        clock=lambda: 0.0,
    ).pages
}
MESSAGES = {p.anchor: p for pid, p in PAGES.items() if pid.startswith("msg_")}
TURN = 31


def cost(page: Page, level: int, text: str | None) -> int:
    return line_tokens(page, level, COUNTER, text)


def cut(page: Page, words: int) -> str:
    return excerpt(page.text, ["sourdough", "starter"], words)


def candidates(relevant: dict[str, float]) -> list[ScoredPage]:
    return [ScoredPage(PAGES[pid], score, "search") for pid, score in relevant.items()]


def select(
    budget: int,
    relevant: dict[str, float],
    table: PageTable | None = None,
    allowance: int = 200,
    around: bool = True,
) -> Selection:
    return Chooser(
        candidates(relevant),
        cost=cost,
        excerpt=cut,
        table=table or PageTable(),
        turn=TURN,
        allowance=lambda relevance: allowance,
        around=MESSAGES if around else None,
    ).choose(budget)


def test_stays_within_budget_for_any_budget() -> None:
    relevant = {pid: 1.0 / (n + 1) for n, pid in enumerate(PAGES) if pid != "msg_0"}
    for budget in [0, 10, 60, 200, 700, 1500, 4000, 50_000]:
        selection = select(budget, relevant)
        assert selection.tokens <= budget
        assert selection.tokens == sum(m.tokens for m in selection.mapped)
        mapped = {m.page.page_id for m in selection.mapped}
        assert mapped.isdisjoint(c.page.page_id for c in selection.unmapped)


def test_the_budget_goes_to_the_most_relevant_pages_and_the_turns_around_them() -> None:
    selection = select(700, {"msg_21": 1.0, "msg_40": 0.9, "msg_7": 0.2})
    shown = [m.page.page_id for m in selection.mapped]
    # Each hit brings the message before and after it, before the next hit is placed.
    assert set(shown[:3]) == {"msg_20", "msg_21", "msg_22"}
    assert {"msg_39", "msg_41"} <= set(shown)
    reasons = {m.page.page_id: m.reason for m in selection.mapped}
    assert reasons["msg_20"] == reasons["msg_22"] == NEIGHBOUR
    # What did not fit is the least relevant.
    if "msg_7" not in shown:
        assert [c.page.page_id for c in selection.unmapped] == ["msg_7"]


def test_without_neighbours_only_the_hits_are_shown() -> None:
    selection = select(4000, {"msg_21": 1.0, "msg_40": 0.9}, around=False)
    assert {m.page.page_id for m in selection.mapped} == {"msg_21", "msg_40"}


def test_a_page_over_its_allowance_is_shown_as_its_matching_passage() -> None:
    page = PAGES["msg_5"]  # the sourdough note, a long one
    small = select(4000, {"msg_5": 1.0}, allowance=20, around=False)
    (mapped,) = small.mapped
    assert mapped.level == 1 and mapped.text is not None
    assert "sourdough" in mapped.text.lower() and len(mapped.text) < len(page.text)
    whole = select(4000, {"msg_5": 1.0}, allowance=page.tokens[0], around=False)
    assert whole.mapped[0].level == 0 and whole.mapped[0].text is None


def test_summaries_come_after_the_turns_and_only_as_abstracts() -> None:
    turn, broad = PAGES["msg_21"], PAGES["msg_23"]
    summary = Page(
        "seg_0", PageKind.SUMMARY, broad.modality, broad.anchor, broad.turn, "system",
        broad.renderings, broad.tokens, broad.hint,
    )
    pool = [ScoredPage(summary, 1.0, "search"), ScoredPage(turn, 0.6, "search")]
    selection = Chooser(
        pool, cost=cost, excerpt=cut, table=PageTable(), turn=TURN,
        allowance=lambda relevance: 500,
    ).choose(4000)
    assert [(m.page.page_id, m.level) for m in selection.mapped][-1] == ("seg_0", 2)
    tight = Chooser(
        pool, cost=cost, excerpt=cut, table=PageTable(), turn=TURN,
        allowance=lambda relevance: 500,
    ).choose(cost(turn, 0, None))
    assert [m.page.page_id for m in tight.mapped] == ["msg_21"]


def test_recently_faulted_pages_stay_at_the_level_asked() -> None:
    table = PageTable()
    table.note_faulted("msg_40", 0, turn=TURN - 1)
    pool = {"msg_40": 0.0, "msg_21": 1.0}
    selection = select(cost(PAGES["msg_40"], 0, None) + 5, pool, table, around=False)
    assert selection.levels() == {"msg_40": 0}
    # Two turns later the protection is gone: relevance decides.
    later = Chooser(
        candidates(pool), cost=cost, excerpt=cut, table=table, turn=TURN + 2,
        allowance=lambda relevance: 200,
    ).choose(cost(PAGES["msg_21"], 0, None))
    assert later.levels() == {"msg_21": 0}


def test_selection_is_deterministic() -> None:
    relevant = {"msg_3": 0.5, "msg_17": 0.5, "msg_30": 0.9}
    assert select(900, relevant).levels() == select(900, relevant).levels()


def _described(selection: Selection) -> tuple[object, ...]:
    return (
        [(m.page.page_id, m.level, m.tokens, m.score, m.reason, m.text, m.words)
         for m in selection.mapped],
        [c.page.page_id for c in selection.unmapped],
        selection.tokens, selection.notes, selection.priced,
    )  # fmt: skip


def test_a_chooser_asked_for_budget_after_budget_chooses_as_a_fresh_choice_would() -> None:
    # Every kind of step and mark: dates that head runs, a page faulted lately (kept at its
    # level, or noted when it does not fit), summaries last, the turns around each hit.
    pages = {
        pid: replace(p, extra={**p.extra, "said": f"{1 + p.anchor // 9} May 2023"})
        for pid, p in PAGES.items()
    }
    around = {p.anchor: p for pid, p in pages.items() if pid.startswith("msg_")}
    broad = pages["msg_23"]
    summary = Page(
        "seg_0", PageKind.SUMMARY, broad.modality, broad.anchor, broad.turn, "system",
        broad.renderings, broad.tokens, broad.hint,
    )
    table = PageTable()
    table.note_faulted("msg_40", 1, turn=TURN - 1)
    ids = sorted(pages, key=lambda pid: pages[pid].anchor)
    pool = [ScoredPage(pages[pid], 1.0 / (n + 1), "search") for n, pid in enumerate(ids)
            if n % 3 == 0 or pid == "msg_40"]  # fmt: skip
    pool.append(ScoredPage(summary, 0.8, "search"))
    choice: dict[str, Any] = dict(
        cost=cost, excerpt=cut, table=table, turn=TURN, around=around,
        allowance=lambda relevance: 40 + int(300 * relevance), date_cost=lambda when: 7,
    )
    chooser = Chooser(pool, **choice)
    budgets = [700, 690, 1400, 1390, 90, 5000, 655, 652, 0, 3, 700, 2600, 2590, 2580]
    shown = set()
    for budget in budgets:
        again = chooser.choose(budget)
        fresh = Chooser(pool, **choice).choose(budget)
        assert _described(again) == _described(fresh)
        shown.add(len(fresh.mapped))
    assert len(shown) > 5  # the budgets make different choices
    assert "msg_40 faulted recently but did not fit" in Chooser(pool, **choice).choose(0).notes
