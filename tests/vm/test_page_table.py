from __future__ import annotations

import json

from proxy.vm.page_table import CAPACITY, L1_SIZE, PageTable


def test_access_stats_and_levels() -> None:
    table = PageTable()
    table.note_mapped({"msg_1": 2, "seg_0": 1}, turn=3)
    table.note_mapped({"msg_1": 2}, turn=3)
    table.note_faulted("msg_1", 0, turn=4)
    entry = table.get("msg_1")
    assert entry is not None
    assert (entry.mapped, entry.faulted, entry.last_faulted, entry.last_mapped) == (1, 1, 4, 3)
    assert table.preferred_level("msg_1", 2) == 0
    assert table.preferred_level("seg_0", 2) == 2  # mapped, never faulted: no preference
    assert table.faulted_recently("msg_1", 4) and table.faulted_recently("msg_1", 5)
    assert not table.faulted_recently("msg_1", 6)
    assert table.l1 == ["msg_1"]


def test_heat_decays_and_ranks_hot_pages() -> None:
    table = PageTable()
    table.note_faulted("msg_1", 0, turn=1)
    table.note_faulted("msg_2", 0, turn=9)
    assert table.heat("msg_2", 10) > table.heat("msg_1", 10) > 0
    assert table.heat("msg_1", 40) < 0.01 and table.heat("nope", 10) == 0.0
    assert table.hot_ids(10)[:2] == ["msg_2", "msg_1"]


def test_json_round_trip() -> None:
    table = PageTable()
    table.note_mapped({"msg_1": 2, "claim_0": 0}, turn=2)
    table.note_faulted("seg_3", 1, turn=2)
    data = json.loads(json.dumps(table.to_dict()))
    again = PageTable.from_dict(data)
    assert again.to_dict() == table.to_dict()
    assert PageTable.from_dict(None).to_dict() == {"v": 1, "e": {}, "l1": []}


def test_bounded_whatever_the_conversation_length() -> None:
    table = PageTable()
    for turn in range(2000):
        table.note_mapped({f"msg_{turn}": 2, f"claim_{turn}": 0}, turn)
        if turn % 3 == 0:
            table.note_faulted(f"msg_{turn // 2}", 0, turn)
    assert len(table) <= CAPACITY and len(table.l1) <= L1_SIZE
    assert "msg_1999" in table.entries and "msg_5" not in table.entries
    assert set(table.l1) <= set(table.entries)
    assert len(json.dumps(table.to_dict())) < 20_000
