"""The turn record: what one VM turn put in its first upstream prompt, small enough to keep
for every turn, and enough to build that prompt again from the stored pages.

The packer describes its prompt as a record (`TurnRecord`) and renders it with
`upstream_messages` and turn_block's `render_block`; `rebuild_messages` renders a stored
record with the same functions, so a replay cannot drift from what was sent unless the
code that renders changed. A record keeps, per turn:
- the window (`window`): the message pages sent verbatim, in order, each marked when it
  went reduced (`:r`, a long tool result as its extract) or clipped (`:c`, its message kept
  in `clipped`, a last resort of fitting);
- the block's lines (`lines`): each page shown with its level, and for a long page shown as
  the passages that match the question the words asked for (`msg_9:1:77`), with the
  question's search terms (`terms`) those passages were chosen by; the best other hits
  (`more`, their passages `hint_words` long) and the count of pages left unnamed
  (`omitted`);
- the leading manifest (`lead`), the leading role, and whether the block closed the leading
  message (`in_lead`) or followed the latest user message;
- the token breakdown of the prompt as the packer counted it (`tokens`);
- filled by the loop once the turn ends: the digest of the first body as sent (`sent`, the
  SHA-256 of its bytes; `parts`, a CRC-32 per message to name a difference), where the
  request's static part is logged (`static`, `static_turn`: the client's other fields, tool
  schemas included, and the leading message's rules, logged once per conversation while
  they stay the same) and what the loop did (`loop`: calls, faults, searches, tokens sent).

Ids are written as runs (`msg_40-57`), so a record costs about a kilobyte where a mutation
per page shown cost tens. The prompt's client system prompt and rules (`prefix`) belong to
the static part and are not in the record's JSON.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.vm import manifest
from proxy.vm.context import order_lines
from proxy.vm.excerpt import excerpt
from proxy.vm.frame import block_position
from proxy.vm.pages import Page
from proxy.vm.pinning import reduced_message
from proxy.vm.turn_block import LEAD_JOIN, render_block
from proxy.vm.working_set import Mapped

VERSION = 1
REDUCED = "r"
CLIPPED = "c"
_RUN = re.compile(r"^([a-z]+)_(\d+)(?:-(\d+))?$")


class RecordError(ValueError):
    """A stored record (or a page it names) cannot be read back."""


# Line and Shown are not frozen (never changed, but a frozen dataclass's __init__ costs
# several times a plain one's, and every turn makes one per line and window message).
@dataclass(slots=True)
class Line:
    """One page of the block: its level, and `words` > 0 when it was shown as the passages
    of it that match the turn's terms (level 1, an excerpt)."""

    page_id: str
    level: int
    words: int = 0


@dataclass(slots=True)
class Shown:
    """One message of the window: `form` "" verbatim, REDUCED or CLIPPED."""

    page_id: str
    form: str = ""


@dataclass
class TurnRecord:
    turn: int
    mode: str
    role: str
    in_lead: bool
    lead: dict[str, Any]
    window: list[Shown] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    more: list[str] = field(default_factory=list)
    omitted: int | None = None
    hint_words: int = 0
    terms: list[str] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    clipped: dict[str, dict[str, Any]] = field(default_factory=dict)
    position: int = 0  # of the message after the prompt (the answer)
    static: str = ""
    static_turn: int = -1
    sent: str = ""
    parts: str = ""
    loop: dict[str, int] = field(default_factory=dict)
    # Kept in the static part, not in the record's JSON: the leading message's text
    # before its manifest (the client's system prompt and the mode's rules).
    prefix: str = ""

    @property
    def has_block(self) -> bool:
        """A turn's block exists exactly when it shows a page or names one."""
        return bool(self.lines or self.more)

    def in_view(self) -> dict[str, int]:
        """Page id -> level of what the prompt showed (window messages at 0)."""
        return {**{s.page_id: 0 for s in self.window}, **{x.page_id: x.level for x in self.lines}}

    def to_detail(self) -> str:
        data: dict[str, Any] = {
            "v": VERSION,
            "pos": self.position,
            "mode": self.mode,
            "role": self.role,
            "in_lead": self.in_lead,
            "lead": self.lead,
            "window": encode_ids((s.page_id, s.form) for s in self.window),
            # In id order, so runs form (the block is ordered again when rendered).
            "lines": encode_ids(
                (x.page_id, _line_suffix(x)) for x in sorted(self.lines, key=_id_order)
            ),
            "more": ",".join(self.more),
            "hint_words": self.hint_words,
            "terms": " ".join(self.terms),
            "tokens": self.tokens,
        }
        if self.omitted is not None:
            data["omitted"] = self.omitted
        if self.clipped:
            data["clipped"] = self.clipped
        if self.static:
            data.update(static=self.static, static_turn=self.static_turn)
        if self.sent:
            data.update(sent=self.sent, parts=self.parts)
        if self.loop:
            data["loop"] = self.loop
        return orjson.dumps(data).decode()

    @classmethod
    def from_detail(cls, turn: int, detail: str) -> TurnRecord:
        try:
            data = orjson.loads(detail)
            if not isinstance(data, dict) or data.get("v") != VERSION:
                raise RecordError(f"turn {turn}: not a version-{VERSION} turn record")
            window = [Shown(pid, form) for pid, form in decode_ids(data["window"])]
            lines = [_line(pid, suffix) for pid, suffix in decode_ids(data["lines"])]
            more = [pid for pid in str(data.get("more") or "").split(",") if pid]
            return cls(
                turn=turn, mode=str(data["mode"]), role=str(data["role"]),
                in_lead=bool(data["in_lead"]), lead=dict(data["lead"]), window=window,
                lines=lines, more=more, omitted=data.get("omitted"),
                hint_words=int(data.get("hint_words", 0)),
                terms=str(data.get("terms") or "").split(), tokens=dict(data["tokens"]),
                clipped=dict(data.get("clipped") or {}), position=int(data["pos"]),
                static=str(data.get("static", "")),
                static_turn=int(data.get("static_turn", -1)),
                sent=str(data.get("sent", "")), parts=str(data.get("parts", "")),
                loop=dict(data.get("loop") or {}),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, RecordError):
                raise
            raise RecordError(f"turn {turn}: unreadable turn record ({exc})") from exc


def window_entry(page: Page, message: Mapping[str, Any]) -> tuple[Shown, dict[str, Any] | None]:
    """How a window message relates to its page: verbatim, reduced, or clipped (then the
    message sent is kept, second)."""
    original = page.message or {"role": page.role, "content": page.text}
    if message == original:
        return Shown(page.page_id), None
    if message == reduced_message(page, original):
        return Shown(page.page_id, REDUCED), None
    return Shown(page.page_id, CLIPPED), dict(message)


def upstream_messages(
    *,
    role: str,
    prefix: str,
    lead: Mapping[str, Any],
    window: Sequence[Mapping[str, Any]],
    block: str | None,
    in_lead: bool,
) -> list[dict[str, Any]]:
    """The prompt's messages: the leading message (the prefix and the leading manifest, and
    the block when it closes that message), then the window, the block right after its
    latest user message otherwise."""
    content = prefix + LEAD_JOIN + manifest.render_manifest(lead)
    messages = [dict(m) for m in window]
    if block is not None and in_lead:
        content += LEAD_JOIN + block
    elif block is not None:
        messages.insert(block_position(messages), {"role": role, "content": block})
    return [{"role": role, "content": content}, *messages]


def page_ids(record: TurnRecord) -> list[str]:
    """Every page a record names (what rebuilding it reads)."""
    ids = [s.page_id for s in record.window]
    ids += [x.page_id for x in record.lines]
    ids += record.more
    return list(dict.fromkeys(ids))


def rebuild_messages(
    record: TurnRecord, pages: Mapping[str, Page], prefix: str
) -> list[dict[str, Any]]:
    """The messages of the prompt a record describes, from the pages it names."""
    missing = [pid for pid in page_ids(record) if pid not in pages]
    if missing:
        raise RecordError(f"turn {record.turn}: pages not found: {', '.join(missing[:5])}")
    window: list[Mapping[str, Any]] = []
    for shown in record.window:
        page = pages[shown.page_id]
        message = page.message or {"role": page.role, "content": page.text}
        if shown.form == REDUCED:
            message = reduced_message(page, message)
        elif shown.form == CLIPPED:
            message = record.clipped.get(shown.page_id, message)
        window.append(message)
    block = None
    if record.has_block:
        terms = record.terms
        mapped = [_mapped(pages[x.page_id], x, terms) for x in record.lines]
        more = [(pages[pid], excerpt(pages[pid].text, terms, record.hint_words))
                for pid in record.more]  # fmt: skip
        data = manifest.build_delta(turn=record.turn, more=more, omitted=record.omitted)
        block = render_block(order_lines(mapped), data)
    return upstream_messages(
        role=record.role, prefix=prefix, lead=record.lead, window=window, block=block,
        in_lead=record.in_lead,
    )


def _mapped(page: Page, line: Line, terms: Collection[str]) -> Mapped:
    text = excerpt(page.text, terms, line.words) if line.words else None
    return Mapped(page, line.level, 0, 0.0, text=text, words=line.words)


def _id_order(line: Line) -> tuple[str, int, str]:
    prefix, _, number = line.page_id.partition("_")
    return (prefix, int(number), "") if number.isdigit() else (prefix, -1, number)


def _line_suffix(line: Line) -> str:
    if line.words:
        return f"{line.level}:{line.words}"
    return str(line.level) if line.level else ""


def _line(page_id: str, suffix: str) -> Line:
    if not suffix:
        return Line(page_id, 0)
    level, _, words = suffix.partition(":")
    return Line(page_id, int(level), int(words or 0))


def encode_ids(entries: Iterable[tuple[str, str]]) -> str:
    """`(page id, suffix)` pairs as runs: `msg_40-44,msg_45:r,seg_2:2`. Order is kept only
    within what it says: runs are made of consecutive ids with the same suffix, in the
    order given (a window is in order; a block is ordered when rendered)."""
    out: list[str] = []
    run: tuple[str, int, int, str] | None = None  # prefix, first, last, suffix

    def close() -> None:
        if run is not None:
            prefix, first, last, suffix = run
            ids = f"{prefix}_{first}" + (f"-{last}" if last != first else "")
            out.append(ids + (f":{suffix}" if suffix else ""))

    for page_id, suffix in entries:
        prefix, _, number = page_id.partition("_")
        if not number.isdigit() or number != str(int(number)):
            close()
            run = None
            out.append(page_id + (f":{suffix}" if suffix else ""))
            continue
        n = int(number)
        if run is not None and run[0] == prefix and run[2] + 1 == n and run[3] == suffix:
            run = (prefix, run[1], n, suffix)
            continue
        close()
        run = (prefix, n, n, suffix)
    close()
    return ",".join(out)


def decode_ids(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for item in filter(None, text.split(",")):
        ids, _, suffix = item.partition(":")
        match = _RUN.match(ids)
        if match is None or match.group(3) is None:
            found.append((ids, suffix))
            continue
        prefix, first, last = match.group(1), int(match.group(2)), int(match.group(3))
        if last < first or last - first > 1_000_000:
            raise RecordError(f"bad id run {ids!r}")
        found.extend((f"{prefix}_{n}", suffix) for n in range(first, last + 1))
    return found
