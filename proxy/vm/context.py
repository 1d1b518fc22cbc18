"""The `<VM:CONTEXT>` section: the pages mapped this turn, as a transcript.

One line per page, `[<page_id>] <who>: <text>`, in conversation order, so that a question
and its answer read as they were said; the date a run of messages was said on heads it
(`— 8 May 2023 —`, where it changes), and `…` marks where turns were left out between two
runs. Summaries come first (they cover ranges, not moments). `<who>` is the speaker's name
when the client sent one, else the role; a shortened page says so (`(excerpt)`,
`(reduced)`, `(abstract)`), so the model knows a `page_fault` can bring the rest. Texts are
escaped (escape.py) so that none can close the section or pose as a line of ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy.tokens import TokenCounter
from proxy.vm.escape import escape_block
from proxy.vm.pages import Page, PageKind
from proxy.vm.working_set import Mapped

OPEN = "<VM:CONTEXT>"
CLOSE = "</VM:CONTEXT>"
GAP = "…"
LEVEL_MARKS = ("", " (reduced)", " (abstract)", " (reference)")
EXCERPT_MARK = " (excerpt)"
# Cached header counts are valid for this header format only.
HEADER_VERSION = 3
_BROAD = (PageKind.SUMMARY, PageKind.INDEX)


def who(page: Page) -> str:
    """Who a line is from: the speaker's name, else the role, else what the page is."""
    speaker = page.extra.get("speaker")
    if isinstance(speaker, str) and speaker:
        return speaker
    prefix = page.page_id.partition("_")[0]
    if prefix == "img":
        return "image"
    if prefix != "msg":
        return page.kind.value
    if page.role == "tool":
        function = page.extra.get("function")
        return f"tool {function}" if function else "tool"
    return page.role or "message"


def header(page: Page, level: int, excerpted: bool = False) -> str:
    mark = EXCERPT_MARK if excerpted else LEVEL_MARKS[level]
    return f"[{page.page_id}] {who(page)}{mark}: "


def date_head(when: str) -> str:
    """The line that heads a run of messages said on `when`."""
    return f"— {escape_block(when)} —"


def said(page: Page) -> str:
    value = page.extra.get("said")
    return value if isinstance(value, str) else ""


def render_line(mapped: Mapped) -> str:
    page = mapped.page
    body = mapped.text if mapped.text is not None else page.rendering(mapped.level)
    return header(page, mapped.level, mapped.text is not None) + escape_block(body)


def line_tokens(page: Page, level: int, counter: TokenCounter, text: str | None = None) -> int:
    """Tokens a line adds, from the page's cached counts when they are for this encoding
    and header format; `text`: an excerpt shown in place of the page's rendering. Counted
    apart, a header's closing space is a token of its own and the line break another; in
    the section the space joins the text's first word and the break its last, so neither
    is counted."""
    body = counter.text(text) if text is not None else page.tokens[level]
    cached = page.extra.get("header_tokens")
    if (
        text is None
        and isinstance(cached, list)
        and page.extra.get("enc") == counter.name
        and page.extra.get("hv") == HEADER_VERSION
    ):
        return int(cached[level]) + body
    return counter.text(header(page, level, text is not None).rstrip()) + body


def header_costs(page: Page, counter: TokenCounter) -> dict[str, Any]:
    """Tokens of this page's line header at each level (closing space left out, see
    `line_tokens`), to keep in `page.extra`."""
    return {
        "header_tokens": [counter.text(header(page, lv).rstrip(), memo=False) for lv in range(4)],
        "hv": HEADER_VERSION,
    }


def order_lines(mapped: Sequence[Mapped]) -> list[Mapped]:
    """Summaries first (by id), then every other page in conversation order (a message
    before what was drawn from it)."""

    # The keys made in one pass (a key function would cost a call per line, and the block
    # orders its lines for every choice it prices).
    keys = [
        (m.page.kind not in _BROAD, m.page.anchor, not m.page.page_id.startswith("msg_"),
         m.page.page_id)
        for m in mapped
    ]  # fmt: skip
    return [mapped[i] for i in sorted(range(len(keys)), key=keys.__getitem__)]


def render_context(mapped: Sequence[Mapped]) -> str:
    return render_ordered(order_lines(mapped))


def render_ordered(ordered: Sequence[Mapped]) -> str:
    """The section of lines already in `order_lines`' order."""
    return OPEN + "\n" + "\n".join(_lines(ordered)) + ("\n" if ordered else "") + CLOSE


def structure_tokens(mapped: Sequence[Mapped], counter: TokenCounter) -> int:
    """What the section adds besides its page lines: the tags, date heads and gap marks."""
    tokens = counter.text(OPEN + "\n" + CLOSE)
    gap = counter.text(GAP)
    # The marks _mark_slots places, counted as they come (the block prices every choice):
    # only the lines that are not summaries take them, in order_lines' order (the page id
    # is unique, so what it was said on is never compared).
    lines = [
        (page.anchor, not page.page_id.startswith("msg_"), page.page_id, page.extra.get("said"))
        for m in mapped
        if (page := m.page).kind not in _BROAD
    ]
    lines.sort()
    date = ""
    last_anchor: int | None = None
    for anchor, _, _, when in lines:
        if last_anchor is not None and anchor > last_anchor + 1:
            tokens += gap
        if isinstance(when, str) and when and when != date:
            tokens += counter.text(date_head(when))
            date = when
        last_anchor = anchor
    return tokens


def _lines(ordered: Sequence[Mapped]) -> list[str]:
    out: list[str] = []
    marks = iter(_mark_slots(ordered))
    for m in ordered:
        out.extend(next(marks))
        out.append(render_line(m))
    return out


def _mark_slots(ordered: Sequence[Mapped]) -> list[list[str]]:
    """For each line, the date head and gap mark that go before it."""
    slots: list[list[str]] = []
    date = ""
    last_anchor: int | None = None
    for m in ordered:
        slot: list[str] = []
        page = m.page
        if page.kind not in _BROAD:
            if last_anchor is not None and page.anchor > last_anchor + 1:
                slot.append(GAP)
            when = said(page)
            if when and when != date:
                slot.append(date_head(when))
                date = when
            last_anchor = page.anchor
        slots.append(slot)
    return slots
