"""The `<VM:MANIFEST_JSON>` section: what is mapped, what else exists, and the rules of paging.

Shape (one line of JSON, `<` written as `\\u003c` so no string can close the section):
    {"turn": 7, "mode": "strict",
     "pinned": ["msg_40", ...],                       the recent messages, in order
     "mapped": [{"id","type","level","tokens"}, ...],  pages in <VM:CONTEXT>
     "available": [{"id","type","hint","tokens"}, ...],
     "omitted": 120,                                   pages not listed (search finds them)
     "policy": {...}}
`type` is the role for messages (user, assistant, tool, system) and the page type otherwise.
`available` is bounded by `max_entries` and ranked by what the turn most likely needs:
summaries first (newest history first), then by the candidates' scores, so it lists the
relevant pages rather than the first ones inserted. `tokens` there is the page's full size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.tokens import TokenCounter
from proxy.vm.escape import escape_json
from proxy.vm.pages import Page, PageKind
from proxy.vm.working_set import Mapped

OPEN = "<VM:MANIFEST_JSON>"
CLOSE = "</VM:MANIFEST_JSON>"
LEVELS = {"0": "full", "1": "reduced", "2": "abstract", "3": "reference"}


@dataclass(frozen=True, slots=True)
class Policy:
    faults: bool
    max_faults_per_turn: int
    max_fault_tokens_per_turn: int
    default_level: int = 2
    tools: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"faults": self.faults}
        if self.faults:
            data |= {
                "max_faults_per_turn": self.max_faults_per_turn,
                "max_fault_tokens_per_turn": self.max_fault_tokens_per_turn,
                "default_level": self.default_level,
                "levels": LEVELS,
            }
            if self.tools:
                data["tools"] = dict(self.tools)
        return data


def rank_available(
    pages: Sequence[Page], *, exclude: set[str], order: Mapping[str, float]
) -> list[Page]:
    """Unmapped pages, summaries first (newest first), then by `order` (higher first)."""
    unique: dict[str, Page] = {}
    for page in pages:
        if page.page_id not in exclude:
            unique.setdefault(page.page_id, page)

    def key(page: Page) -> tuple[int, float, int, str]:
        summary = page.kind in (PageKind.SUMMARY, PageKind.INDEX)
        return (0 if summary else 1, -order.get(page.page_id, 0.0), -page.anchor, page.page_id)

    return sorted(unique.values(), key=key)


def build_frozen(
    *,
    mode: str,
    pinned_from: str | None,
    mapped: Sequence[Mapped],
    available: Sequence[Page],
    policy: Policy,
) -> dict[str, Any]:
    """The manifest of the frozen context (frame.py): the same bytes from one compaction to
    the next, so it names no turn. `pinned_from` is the first message of the verbatim
    window (every later message is in the prompt as itself); it comes last, as it is what
    changes at every compaction."""
    data: dict[str, Any] = {"mode": mode}
    data["mapped"] = [
        mapped_entry(m.page, m.level)
        for m in sorted(mapped, key=lambda m: (m.page.anchor, m.page.page_id))
    ]
    data["available"] = [available_entry(p) for p in available]
    data["policy"] = policy.to_dict()
    if pinned_from is not None:
        data["pinned_from"] = pinned_from
    return data


def build_delta(
    *, turn: int, mapped: Sequence[Mapped], available: Sequence[Page], omitted: int | None
) -> dict[str, Any]:
    """The manifest of this turn's block: the turn, what the block maps, the best hits it
    does not map."""
    data: dict[str, Any] = {
        "turn": turn,
        "mapped": [
            mapped_entry(m.page, m.level)
            for m in sorted(mapped, key=lambda m: (m.page.anchor, m.page.page_id))
        ],
        "available": [available_entry(p) for p in available],
    }
    if omitted is not None:
        data["omitted"] = omitted
    return data


def mapped_entry(page: Page, level: int) -> dict[str, Any]:
    return {"id": page.page_id, "type": _type(page), "level": level, "tokens": page.tokens[level]}


def available_entry(page: Page) -> dict[str, Any]:
    return {"id": page.page_id, "type": _type(page), "hint": page.hint, "tokens": page.tokens[0]}


def entry_costs(page: Page, counter: TokenCounter) -> dict[str, Any]:
    """Tokens of this page's manifest entries (available; mapped at each level), to keep in
    `page.extra` so packing need not count them again turn after turn."""
    return {
        "avail_tokens": counter.text(_json(available_entry(page)), memo=False),
        "mapped_tokens": [
            counter.text(_json(mapped_entry(page, lv)), memo=False) for lv in range(4)
        ],
    }


def render_manifest(manifest: Mapping[str, Any]) -> str:
    return f"{OPEN}\n{_json(manifest)}\n{CLOSE}"


def manifest_tokens(
    manifest: Mapping[str, Any], counter: TokenCounter, pages: Mapping[str, Page] | None = None
) -> int:
    """Tokens of `render_manifest(manifest)`, counted by parts: the frame, then each list
    entry plus one for its comma (never below the count of the whole, since joining only
    merges tokens). Entries of `pages` use the counts cached by `entry_costs`."""
    lists = ("pinned", "mapped", "available")
    total = counter.text(render_manifest({**manifest, **dict.fromkeys(lists, [])}))
    total += sum(counter.text(_json(pid)) + 1 for pid in manifest.get("pinned", ()))
    for key in ("mapped", "available"):
        for entry in manifest.get(key, ()):
            total += _cached(entry, key, pages, counter) + 1
    return total


def _cached(
    entry: Mapping[str, Any], key: str, pages: Mapping[str, Page] | None, counter: TokenCounter
) -> int:
    page = pages.get(entry["id"]) if pages is not None else None
    if page is not None and page.extra.get("enc") == counter.name:
        if key == "available" and "avail_tokens" in page.extra:
            return int(page.extra["avail_tokens"])
        found = page.extra.get("mapped_tokens")
        if key == "mapped" and isinstance(found, list):
            return int(found[entry["level"]])
    return counter.text(_json(entry))


def _json(value: Any) -> str:
    return escape_json(orjson.dumps(value).decode())


def _type(page: Page) -> str:
    """Messages by role (as in the context headers); other pages by type."""
    if page.page_id.startswith("msg_") and page.role:
        return page.role
    return page.kind.value
