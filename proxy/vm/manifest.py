"""The `<VM:MANIFEST_JSON>` sections: the rules of paging, and what else there is.

Two of them, each one line of JSON (`<` written as `\\u003c` so no string can close it):
- the leading message's, the same bytes from one compaction to the next (prompt caches
  reuse it): `{"mode", "max_faults", "max_fault_tokens", "pinned_from"}` (`{"mode",
  "faults": false, ...}` without the tools), where `pinned_from` is the first message
  of the verbatim window (every later message is in the prompt as itself);
- this turn's, after its `<VM:CONTEXT>`: `{"turn", "more": [...], "omitted"}`, where `more`
  lists the best hits for the latest message that the context could not show, each with
  who said it, when, and the passage that matched (the ids to fault next), and `omitted`
  counts the pages neither shown nor listed (search finds them).
The context itself names every page it shows, so no list repeats them here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.tokens import TokenCounter
from proxy.vm.escape import escape_json
from proxy.vm.pages import Page

OPEN = "<VM:MANIFEST_JSON>"
CLOSE = "</VM:MANIFEST_JSON>"


@dataclass(frozen=True, slots=True)
class Policy:
    faults: bool
    max_faults_per_turn: int
    max_fault_tokens_per_turn: int

    def to_dict(self) -> dict[str, Any]:
        if not self.faults:
            return {"faults": False}
        return {
            "max_faults": self.max_faults_per_turn,
            "max_fault_tokens": self.max_fault_tokens_per_turn,
        }


def build_lead(*, mode: str, pinned_from: str | None, policy: Policy) -> dict[str, Any]:
    """The leading message's manifest: it names no turn, so it changes only when the
    window restarts (`pinned_from`, last, as what changes)."""
    data: dict[str, Any] = {"mode": mode, **policy.to_dict()}
    if pinned_from is not None:
        data["pinned_from"] = pinned_from
    return data


def build_delta(
    *, turn: int, more: Sequence[tuple[Page, str]], omitted: int | None
) -> dict[str, Any]:
    """This turn's manifest: `more` holds (page, the passage that matched) for the best
    hits the context does not show."""
    data: dict[str, Any] = {"turn": turn, "more": [more_entry(p, h) for p, h in more]}
    if omitted is not None:
        data["omitted"] = omitted
    return data


def more_entry(page: Page, passage: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": page.page_id}
    speaker = page.extra.get("speaker")
    if speaker:
        entry["who"] = speaker
    elif page.page_id.startswith("msg_") and page.role:
        entry["who"] = page.role
    else:
        entry["type"] = page.kind.value
    when = page.extra.get("said")
    if when:
        entry["when"] = when
    entry["hint"] = passage
    entry["tokens"] = page.tokens[0]
    return entry


def render_manifest(manifest: Mapping[str, Any]) -> str:
    return f"{OPEN}\n{_json(manifest)}\n{CLOSE}"


def manifest_tokens(manifest: Mapping[str, Any], counter: TokenCounter) -> int:
    return counter.text(render_manifest(manifest))


def _json(value: Any) -> str:
    return escape_json(orjson.dumps(value).decode())
