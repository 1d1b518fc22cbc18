"""How the scripted model reads one chat-completions request: the passages it may answer
from (in conversation order), the manifest, the VM tools offered, and what it has already
done this turn.

Evidence, as in strict mode: `<VM:CONTEXT>` blocks, the real messages (the client's system
prompt, pinned turns, client tool results) and the content of page_fault results. Not
evidence: the manifest's hints and search results, which only say where to look.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from proxy.vm.pages import parse_page_id

_MANIFEST = re.compile(r"<VM:MANIFEST_JSON>(.*?)</VM:MANIFEST_JSON>", re.S)
_CONTEXT = re.compile(r"<VM:CONTEXT>(.*?)</VM:CONTEXT>", re.S)
_BLOCK_HEAD = re.compile(r"^\[(?P<id>[a-z]+_\d+)(?: [^\]\n]*)?\] ?", re.M)
VM_TOOLS = ("search_pages", "page_fault")
# Real messages come after every paged block: they are the newest part of the prompt.
_PINNED_ORDER = 10**9


@dataclass(frozen=True, slots=True)
class Passage:
    """A piece of visible text; `order` places it in the conversation (higher is newer)."""

    text: str
    order: float
    page_id: str | None = None


@dataclass
class Reading:
    question: str
    passages: list[Passage] = field(default_factory=list)
    mapped: dict[str, int] = field(default_factory=dict)
    vm_tools: dict[str, str] = field(default_factory=dict)
    searched: bool = False
    hits: list[tuple[str, str]] = field(default_factory=list)  # (id, hint), best first
    faulted: list[str] = field(default_factory=list)
    fault_errors: list[str] = field(default_factory=list)

    @property
    def visible_text(self) -> str:
        return "\n".join(p.text for p in self.passages)


def _order_of(page_id: str | None) -> float:
    parsed = parse_page_id(page_id) if page_id else None
    if parsed is not None and parsed[0] == "msg":
        return float(parsed[1])
    return -1.0  # summaries and claims: older than any message they may stand for


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _read_vm_message(text: str, reading: Reading) -> None:
    manifest = _MANIFEST.search(text)
    if manifest is not None:
        try:
            data = json.loads(manifest.group(1))
        except ValueError:
            data = {}
        for entry in data.get("mapped", []) if isinstance(data, dict) else []:
            if isinstance(entry, dict) and "id" in entry:
                reading.mapped[str(entry["id"])] = int(entry.get("level", 0))
    outside = _CONTEXT.sub("", _MANIFEST.sub("", text)).strip()
    if outside:
        reading.passages.append(Passage(outside, -2.0))
    # Every <VM:CONTEXT>: with vm.turn_note "leading" the turn's block closes the leading
    # message, a second one.
    for context in _CONTEXT.finditer(text):
        body = context.group(1)
        heads = list(_BLOCK_HEAD.finditer(body))
        for index, head in enumerate(heads):
            end = heads[index + 1].start() if index + 1 < len(heads) else len(body)
            page_id = head.group("id")
            reading.passages.append(
                Passage(body[head.end() : end].strip(), _order_of(page_id), page_id)
            )


def read_request(body: dict[str, Any]) -> Reading:
    messages: list[dict[str, Any]] = body.get("messages", [])
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    reading = Reading(
        question=_text_of(messages[last_user].get("content")) if last_user >= 0 else ""
    )
    offered = {t.get("function", {}).get("name", "") for t in body.get("tools") or []}
    for base in VM_TOOLS:
        for name in (base, f"vm_{base}"):
            if name in offered:
                reading.vm_tools[base] = name
    by_call: dict[str, tuple[str, dict[str, Any]]] = {}
    for index, message in enumerate(messages):
        role = message.get("role")
        text = _text_of(message.get("content"))
        this_turn = index > last_user
        if role in ("system", "developer"):
            if "<VM:" in text:
                _read_vm_message(text, reading)
            elif text:
                reading.passages.append(Passage(text, -2.0))
            continue
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except ValueError:
                arguments = {}
            by_call[call.get("id", "")] = (function.get("name", ""), arguments)
        if role == "tool":
            name, arguments = by_call.get(message.get("tool_call_id", ""), ("", {}))
            if name == reading.vm_tools.get("search_pages", "search_pages"):
                if this_turn:
                    reading.searched = True
                    reading.hits = _hits(text)
                continue
            if name == reading.vm_tools.get("page_fault", "page_fault"):
                _read_fault(text, arguments, reading, this_turn)
                continue
        if text:
            reading.passages.append(Passage(text, _PINNED_ORDER + index))
    reading.passages.sort(key=lambda p: p.order)
    return reading


def _hits(text: str) -> list[tuple[str, str]]:
    try:
        data = json.loads(text)
    except ValueError:
        return []
    results = data.get("results", []) if isinstance(data, dict) else []
    return [
        (str(r["id"]), str(r.get("hint", ""))) for r in results if isinstance(r, dict) and "id" in r
    ]


def _read_fault(text: str, arguments: dict[str, Any], reading: Reading, this_turn: bool) -> None:
    asked = str(arguments.get("page_id", ""))
    try:
        data = json.loads(text)
    except ValueError:
        data = {"error": text}
    if this_turn:
        reading.faulted.append(asked)
    if isinstance(data, dict) and "content" in data:
        page_id = str(data.get("id", asked))
        reading.passages.append(Passage(_text_of(data["content"]), _order_of(page_id), page_id))
    elif this_turn and isinstance(data, dict):
        reading.fault_errors.append(str(data.get("code", "error")))
