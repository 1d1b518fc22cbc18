"""Token costs a page will have every time it is packed, counted once when it is made.

Packing a turn then adds cached numbers instead of running the tokenizer over the same
line headers turn after turn (the pack cache of DESIGN.md section 1).
The counts live in `page.extra` next to `enc`, the encoding they were made with; a page
read under another encoding is simply counted again.
"""

from __future__ import annotations

from proxy.tokens import TokenCounter
from proxy.vm.context import header_costs
from proxy.vm.pages import Page


def annotate_costs(page: Page, counter: TokenCounter) -> Page:
    """Store the page's line-header token counts in its `extra` (in place:
    pages are immutable once stored, and this runs before they are)."""
    page.extra["enc"] = counter.name
    page.extra.update(header_costs(page, counter))
    return page
