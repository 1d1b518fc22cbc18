"""The VM tools offered upstream (`page_fault`, `search_pages`) and their names.

When the client's own tools already use one of these names, ours get a `vm_` prefix (then
`vm2_`, ... should that be taken too). `vm_tool_names` returns the map from our canonical
names to the names used in this request; the loop uses it to tell VM calls from client calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PAGE_FAULT = "page_fault"
SEARCH_PAGES = "search_pages"
CANONICAL = (PAGE_FAULT, SEARCH_PAGES)
MODALITIES = ("text", "image", "audio", "video", "structured")


def client_tool_names(tools: Sequence[Mapping[str, Any]] | None) -> set[str]:
    names: set[str] = set()
    for tool in tools or ():
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping) and function.get("name"):
            names.add(str(function["name"]))
    return names


def vm_tool_names(client_tools: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    """Canonical name -> name used upstream, prefixed only when the client uses the name."""
    taken = client_tool_names(client_tools)
    names: dict[str, str] = {}
    for name in CANONICAL:
        candidate, n = name, 1
        while candidate in taken:
            candidate = f"vm_{name}" if n == 1 else f"vm{n}_{name}"
            n += 1
        names[name] = candidate
    return names


def vm_tool_schemas(names: Mapping[str, str]) -> list[dict[str, Any]]:
    page_fault = names.get(PAGE_FAULT, PAGE_FAULT)
    return [
        {
            "type": "function",
            "function": {
                "name": page_fault,
                "description": (
                    "Load an earlier page by id, with the turns around it. "
                    "Levels: 0 full text, 1 reduced, 2 short abstract, 3 reference."
                ),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "page_id": {
                            "type": "string",
                            "description": "Id of the page, e.g. msg_12, seg_3, claim_7, img_2.",
                        },
                        "target_level": {
                            "type": "integer",
                            "enum": [0, 1, 2, 3],
                            "default": 2,
                        },
                    },
                    "required": ["page_id"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": names.get(SEARCH_PAGES, SEARCH_PAGES),
                "description": (
                    "Search this conversation's earlier pages not shown; returns ids with who "
                    "said it, when, and the passage that matched, best first (superseded_by: "
                    f"restated later). Load one with {page_fault}."
                ),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "Words to look for."},
                        "modality": {"type": "string", "enum": list(MODALITIES)},
                        "limit": {"type": "integer", "default": 5},
                    },
                    "required": ["query"],
                },
            },
        },
    ]
