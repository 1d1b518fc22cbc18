"""Pinned messages sent shorter than they are: what the fault loop takes them to show. A
tool result sent as its reduction can be faulted whole (its note offers level 0); one cut
to its beginning and end is not in view at any level (its note offers a reduction of all
of it); neither is ever answered "already in view" for what it does not show."""

from __future__ import annotations

import orjson
import pytest

from proxy.config import VMSettings
from proxy.vm.faults import ALREADY_MAPPED, FaultState, handle_page_fault
from tests.vm import conversations
from tests.vm.helpers import Memory


def _tools() -> tuple[VMSettings, dict[str, object]]:
    return (VMSettings(context_budget=1400, activate_above=0, pin_last_turns=3),
            {"model": "gpt-4o-mini", "messages": conversations.tool_conversation(6),
             "tools": conversations.CLIENT_TOOLS})


def _paste() -> tuple[VMSettings, dict[str, object]]:
    huge = " ".join(f"word{i} of a very long paste." for i in range(900))
    return (VMSettings(context_budget=1500, activate_above=0),
            {"model": "gpt-4o-mini",
             "messages": [*conversations.short_conversation(), {"role": "user", "content": huge}]})


@pytest.mark.parametrize("case", [_tools, _paste])
def test_reduced_and_clipped_pins_are_faultable(case: object) -> None:
    settings, body = case()  # type: ignore[operator]
    memory = Memory(settings, "gpt-4o-mini")
    packed = memory.pack(body, mode="relaxed")
    in_view = packed.in_view()
    assert packed.pinned_shortened, packed.notes
    assert set(packed.pinned_shortened) <= set(packed.pinned_ids)
    reduced = set(packed.pinned_shortened) - set(packed.pinned_clipped)
    assert all(in_view[page_id] == 1 for page_id in reduced)
    assert not set(packed.pinned_clipped) & set(in_view)
    for page_id in packed.pinned_shortened:
        state = FaultState(max_faults=3, max_tokens=100_000, in_view=dict(in_view))
        outcome = handle_page_fault(orjson.dumps({"page_id": page_id, "target_level": 0}
                                                 ).decode(), memory.pages, state)
        assert outcome.code != ALREADY_MAPPED, outcome.result_json
        assert orjson.loads(outcome.result_json)["level"] == 0
