"""The `<VM:CONTEXT>` section: one block per mapped page.

A block is `[<page_id> <role-or-type>] <text>`, the text being the page's rendering at its
mapped level, escaped (escape.py) so that it can neither close the section nor start a
forged block. A compressed block says so right after its header (`(reduced)`, `(abstract)`),
so the model knows a `page_fault` can bring the rest.

Blocks are ordered so the section's beginning changes rarely between turns (prompt caches
reward a stable prefix): summaries and claims first, by id, then other pages by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy.tokens import TokenCounter
from proxy.vm.escape import escape_block
from proxy.vm.pages import Page, PageKind, parse_page_id
from proxy.vm.working_set import Mapped

OPEN = "<VM:CONTEXT>"
CLOSE = "</VM:CONTEXT>"
SEPARATOR = "\n\n"
LEVEL_MARKS = ("", "(reduced) ", "(abstract) ", "(reference) ")
# Summaries, then claims, change least between turns: they open the section.
_STABLE_RANK = {PageKind.INDEX: 0, PageKind.SUMMARY: 0, PageKind.CLAIM: 1}


def label(page: Page) -> str:
    """The word after the id in a block header: the role of a message, else the type."""
    prefix = page.page_id.partition("_")[0]
    if prefix == "msg":
        return page.role or "message"
    if prefix == "img":
        return "image"
    return page.kind.value


def header(page: Page, level: int) -> str:
    return f"[{page.page_id} {label(page)}] {LEVEL_MARKS[level]}"


def render_block(page: Page, level: int) -> str:
    return header(page, level) + escape_block(page.rendering(level))


def block_tokens(page: Page, level: int, counter: TokenCounter) -> int:
    """Tokens a block adds, from the page's cached counts: header, body and separator, plus
    one for the merges and escapes that counting the parts apart can miss."""
    if page.extra.get("enc") == counter.name:
        headers = page.extra.get("header_tokens")
        head = headers[level] if isinstance(headers, list) else counter.text(header(page, level))
        return head + page.tokens[level] + 2
    return counter.text(header(page, level)) + counter.text(page.rendering(level)) + 2


def header_costs(page: Page, counter: TokenCounter) -> dict[str, Any]:
    """Tokens of this page's block header at each level, to keep in `page.extra`."""
    return {"header_tokens": [counter.text(header(page, lv), memo=False) for lv in range(4)]}


def order_blocks(mapped: Sequence[Mapped]) -> list[Mapped]:
    def key(m: Mapped) -> tuple[int, int, str]:
        rank = _STABLE_RANK.get(m.page.kind, len(_STABLE_RANK))
        parsed = parse_page_id(m.page.page_id)
        number = parsed[1] if parsed else 0
        return (rank, m.page.anchor if rank == len(_STABLE_RANK) else number, m.page.page_id)

    return sorted(mapped, key=key)


def render_context(mapped: Sequence[Mapped]) -> str:
    blocks = [render_block(m.page, m.level) for m in order_blocks(mapped)]
    return OPEN + "\n" + SEPARATOR.join(blocks) + ("\n" if blocks else "") + CLOSE
