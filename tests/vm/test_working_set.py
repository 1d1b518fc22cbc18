from __future__ import annotations

from proxy.tokens import counter_for_model
from proxy.vm.context import block_tokens
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page, PageKind
from proxy.vm.working_set import ScoredPage, select_context
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
TURN = 31


def cost(page: Page, level: int) -> int:
    return block_tokens(page, level, COUNTER)


def candidates(relevant: dict[str, float] | None = None) -> list[ScoredPage]:
    relevant = relevant or {}
    return [
        ScoredPage(p, relevant.get(pid, 0.0), "test") for pid, p in PAGES.items() if pid != "msg_0"
    ]


def select(budget: int, table: PageTable | None = None, **relevant: float):  # type: ignore[no-untyped-def]
    return select_context(
        candidates(relevant),
        budget=budget,
        cost=cost,
        table=table or PageTable(),
        turn=TURN,
        full_pages=4,
    )


def test_stays_within_budget_for_any_budget() -> None:
    for budget in [0, 10, 60, 200, 700, 1500, 4000, 50_000]:
        selection = select(budget)
        assert selection.tokens <= budget
        assert selection.tokens == sum(m.tokens for m in selection.mapped)
        mapped = {m.page.page_id for m in selection.mapped}
        assert mapped.isdisjoint(c.page.page_id for c in selection.unmapped)
        assert len(mapped) + len(selection.unmapped) == len(PAGES) - 1


def test_relevant_pages_come_in_full_others_compressed_before_evicted() -> None:
    selection = select(1500, msg_7=1.0, msg_15=0.8)
    levels = selection.levels()
    assert levels["msg_7"] == 0 and levels["msg_15"] == 0
    # Compress before evicting: more pages are mapped than would fit in full.
    assert sum(1 for lv in levels.values() if lv > 0) >= 4
    assert sum(cost(PAGES[pid], 0) for pid in levels) > 1500
    by_score = sorted(selection.mapped, key=lambda m: -m.score)
    fits, used = 0, 0
    for m in by_score:
        if used + cost(m.page, 0) > 1500:
            break
        fits, used = fits + 1, used + cost(m.page, 0)
    assert len(selection.mapped) > fits


def test_claims_outrank_plain_transcript() -> None:
    levels = select(150).levels()
    assert any(pid.startswith("claim_") for pid in levels)


def test_recently_faulted_pages_are_not_evicted() -> None:
    table = PageTable()
    table.note_faulted("msg_40", 0, turn=TURN - 1)
    selection = select(120, table)
    assert selection.levels().get("msg_40") == 0
    # Two turns later the protection is gone.
    later = select_context(
        candidates(), budget=120, cost=cost, table=table, turn=TURN + 2, full_pages=4
    )
    assert later.levels().get("msg_40") != 0


def test_selection_is_deterministic() -> None:
    assert select(900, msg_3=0.5).levels() == select(900, msg_3=0.5).levels()


def test_large_pages_never_take_most_of_the_budget_in_full() -> None:
    big = PAGES["msg_9"]
    huge = Page(
        big.page_id,
        PageKind.ARTIFACT,
        big.modality,
        big.anchor,
        big.turn,
        big.role,
        (big.text * 40, big.rendering(1), big.rendering(2), big.rendering(3)),
        (big.tokens[0] * 40, big.tokens[1], big.tokens[2], big.tokens[3]),
        big.hint,
    )
    selection = select_context(
        [ScoredPage(huge, 1.0)], budget=1000, cost=cost, table=PageTable(), turn=TURN, full_pages=4
    )
    assert selection.levels() == {"msg_9": 1}
