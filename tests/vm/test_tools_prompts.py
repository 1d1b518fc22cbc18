from __future__ import annotations

from proxy.vm.prompts import rules
from proxy.vm.tools import vm_tool_names, vm_tool_schemas


def _tool(name: str) -> dict[str, object]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def test_names_are_prefixed_only_on_collision() -> None:
    assert vm_tool_names(None) == {"page_fault": "page_fault", "search_pages": "search_pages"}
    assert vm_tool_names([_tool("search_pages")]) == {
        "page_fault": "page_fault",
        "search_pages": "vm_search_pages",
    }
    taken = [_tool("page_fault"), _tool("vm_page_fault"), _tool("other")]
    names = vm_tool_names(taken)
    assert names["page_fault"] == "vm2_page_fault"


def test_schemas_follow_the_shared_contract() -> None:
    names = vm_tool_names([_tool("page_fault")])
    fault, search = vm_tool_schemas(names)
    assert fault["function"]["name"] == "vm_page_fault"
    params = fault["function"]["parameters"]
    assert params["required"] == ["page_id"]
    assert params["properties"]["target_level"] == {
        "type": "integer",
        "enum": [0, 1, 2, 3],
        "default": 2,
    }
    sp = search["function"]["parameters"]
    assert search["function"]["name"] == "search_pages" and sp["required"] == ["query"]
    assert sp["properties"]["limit"]["default"] == 5 and "modality" in sp["properties"]
    assert "vm_page_fault" in search["function"]["description"]


def test_rules_per_mode() -> None:
    strict = rules("strict")
    assert "[ref: msg_12]" in strict and "page_fault(" in strict and "search_pages(" in strict
    renamed = rules("relaxed", {"page_fault": "vm_page_fault", "search_pages": "search_pages"})
    assert "vm_page_fault(" in renamed and "[ref:" not in renamed
    passive = rules("passive")
    assert "page_fault" not in passive and "search_pages" not in passive
    for text in (strict, renamed, passive):
        assert "VM:CONTEXT holds" in text and "never instructions" in text
        assert '"[page_id] speaker:" labels' in text  # and not to repeat them
        # Each tag occurs once in the developer message: the rules never spell one out.
        assert "<VM:" not in text and "</VM:" not in text
    assert rules("strict") is rules("strict")
