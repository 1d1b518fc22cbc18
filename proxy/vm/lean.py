"""Lean message pages: what a short chat stores (issue 15).

Below `vm.activate_above` a request is forwarded unchanged, and most conversations never
grow past it, so what only a memory-active turn reads (levels 1-2, the hint, claims, image
pages, segment summaries, search terms) would be derived for nothing. A lean page keeps
the message and what is cheap and needed to go on: its chain hash, what it costs resent
(`msg_tokens`), who said it and when, and the conversation counters that every later
message depends on (turns, the preamble, open tool calls, the carried date). When the
conversation first needs memory, its lean pages are ingested again in full, in order
(proxy.loop.derive), and stored over the lean ones.

`lean_page` moves exactly the counters `ingest_messages` moves for the message itself, and
none of the derived ones (images, claims, segments): `Counters.derived` marks where the
lean pages begin. A lean page read back (`lean_view`) is a usable page (its text at every
level), so a reader that meets one before it is derived still shows the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.tokens import TokenCounter, note_tool_names
from proxy.vm.attribution import speaker_of, stated_date
from proxy.vm.ingest import OPEN_CALLS, USER_POSITIONS, Counters, message_text
from proxy.vm.pages import Modality, Page, PageKind, make_page_id

LEAN = "lean"
_SPOKEN = ("user", "assistant", "system", "developer")


def is_lean(page: Page) -> bool:
    return bool(page.extra.get(LEAN))


def lean_page(
    message: Mapping[str, Any],
    position: int,
    counters: Counters,
    counter: TokenCounter,
    *,
    chain: str,
    now: float,
) -> Page:
    """The lean page of the message at `position`; updates `counters` as ingest would."""
    role = str(message.get("role") or "")
    if role == "user":
        counters.turns += 1
        counters.user_positions = [*counters.user_positions, position][-USER_POSITIONS:]
    elif role in ("system", "developer") and position == counters.preamble:
        counters.preamble += 1
    function = ""
    names: dict[str, str] | None = None
    if role == "tool":
        call_id = str(message.get("tool_call_id") or "")
        function = counters.open_calls.pop(call_id, "")
        names = {call_id: function}
    extra: dict[str, Any] = {
        LEAN: 1, "enc": counter.name, "msg_tokens": counter.message(message, names)
    }
    if message.get("tool_calls"):
        called: dict[str, str] = {}
        note_tool_names(message, called)
        counters.open_calls.update(called)
        for stale in list(counters.open_calls)[:-OPEN_CALLS]:
            del counters.open_calls[stale]
    if function:
        extra["function"] = function
    speaker = speaker_of(message)
    if speaker:
        extra["speaker"] = speaker
    if role in _SPOKEN:
        text = message_text(message)
        counters.said = stated_date(text) or counters.said
    if counters.said:
        extra["said"] = counters.said
    counters.messages = max(counters.messages, position + 1)
    return lean_view(
        make_page_id("msg", position), position, counters.turns, role, chain, dict(message),
        now, extra,
    )


def lean_view(
    page_id: str,
    anchor: int,
    turn: int,
    role: str,
    chain: str,
    message: dict[str, Any],
    created_at: float,
    extra: dict[str, Any],
) -> Page:
    """A lean page as a Page: the message's text at every level, its resent cost as every
    level's tokens (nothing packs a lean page: it is derived first)."""
    text = message_text(message)
    tokens = int(extra.get("msg_tokens", 0))
    return Page(
        page_id,
        PageKind.TRANSCRIPT,
        Modality.TEXT,
        anchor,
        turn,
        role,
        (text, text, text, f"{page_id}: {text[:80]}"),
        (tokens, tokens, tokens, tokens),
        text[:80],
        chain,
        message,
        0.5,
        (),
        (),
        created_at,
        extra,
    )
