"""The turn replay: what one turn sent upstream, rebuilt from its record, the request's
static part and the stored pages, and checked against the digest of the bytes sent.

The rebuild renders with the packer's own functions (proxy.vm.turn_record), then makes the
body the way the loop made it: the static part's fields with the messages in their place,
as a Responses request's `input` for a Responses upstream, or without the carried
Responses items for a chat upstream serving a Responses client. The check says "same"
when the rebuilt body serializes to the bytes that were sent; otherwise it names the
parts that differ (the request's fields, the leading message, the turn's block, a window
message).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from proxy.admin.reads import Found, Request, levels, not_found, turn_requests
from proxy.loop.responses_adapter import chat_upstream_body
from proxy.store.base import PageStore, Path
from proxy.upstream.responses_format import input_items
from proxy.vm import mutations as events
from proxy.vm.context import who
from proxy.vm.frame import block_position
from proxy.vm.mutations import in_context_at
from proxy.vm.pages import Page
from proxy.vm.sent import differing, digest_body, parse_parts
from proxy.vm.turn_record import RecordError, TurnRecord, page_ids, rebuild_messages

# How far back `turn = -1` looks for the latest memory turn, in windows of turns.
LATEST_WINDOW = 64
LATEST_WINDOWS = 16


async def replay(
    store: PageStore, found: Found, turn: int, *, request: int = 0
) -> dict[str, Any]:
    """The replay of `turn` (-1: the latest memory turn); `request`: which of the turn's
    requests (a client's own tool calls make a turn of several), the first by default."""
    path = found.path
    if turn == -1:
        turn, requests = await _latest(store, found)
    else:
        requests = (await turn_requests(store, path, turn, turn)).get(turn, [])
    if not requests:
        return await _without_record(store, found, turn)
    if not 0 <= request < len(requests):
        raise not_found(f"Turn {turn} has {len(requests)} request(s); no request {request}.")
    chosen = requests[request]
    record = chosen.record
    pages = await store.get_pages(path, page_ids(record))
    answer: dict[str, Any] = {
        "conversation": found.info.conv_id,
        "tenant": found.tenant,
        "turn": turn,
        "request": request,
        "requests": len(requests),
        "position": record.position,
        "mode": record.mode,
        **_what_was_shown(record, pages),
        "faults": [{"id": pid, "level": level} for pid, level in chosen.faults],
        "searches": chosen.searches,
        "cited": chosen.cited,
        "tokens": {**record.tokens, "sent": record.loop.get("sent"),
                   "full": record.loop.get("full")},  # fmt: skip
        "loop": record.loop,
    }
    static = await _static(store, path, record)
    if static is None:
        answer["upstream_request"] = None
        answer["check"] = {"same": None, "differences": [],
                           "note": "the request's static part is not in the log"}  # fmt: skip
        return answer
    try:
        messages = rebuild_messages(record, pages, str(static.get("prefix", "")))
    except RecordError as exc:
        answer["upstream_request"] = None
        answer["check"] = {"same": False, "differences": [str(exc)], "note": str(exc)}
        return answer
    body = rebuilt_body(static, messages)
    answer["upstream_request"] = body
    answer["check"] = check(record, static, body, messages)
    return answer


def rebuilt_body(static: Mapping[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The body as the loop sent it, from the prompt's messages."""
    key = str(static.get("key", "messages"))
    fields = static.get("fields")
    body = dict(fields) if isinstance(fields, Mapping) else {}
    if key == "input":
        body[key] = input_items(messages)
    elif static.get("dialect") == "responses":
        body[key] = chat_upstream_body({"messages": messages})["messages"]
    else:
        body[key] = messages
    return body


def check(
    record: TurnRecord,
    static: Mapping[str, Any],
    body: Mapping[str, Any],
    messages: list[dict[str, Any]],
) -> dict[str, Any]:
    key = str(static.get("key", "messages"))
    prefix, dialect = str(static.get("prefix", "")), str(static.get("dialect", "chat"))
    again = digest_body(body, key, prefix, dialect)
    same = again.digest == record.sent
    result: dict[str, Any] = {"same": same, "digest": record.sent, "rebuilt": again.digest,
                              "differences": []}  # fmt: skip
    if same:
        return result
    if not record.sent:
        result["same"] = None
        result["note"] = "no digest was kept for this turn"
        return result
    wrong = differing(again.parts, parse_parts(record.parts))
    names = _element_names(record, messages, key)
    result["differences"] = [names.get(i, f"{key}[{i}]") for i in wrong] or [
        "the request's fields (model, tools, settings)"
    ]
    return result


def _element_names(
    record: TurnRecord, messages: list[dict[str, Any]], key: str
) -> dict[int, str]:
    """What each element of a chat body's message list is: the leading message, the turn's
    block (right after the window's latest user message), or a window message's page."""
    if key != "messages" or len(messages) != len(record.window) + 1 + (
        record.has_block and not record.in_lead
    ):
        return {}
    names = {0: "messages[0]: the leading message"}
    block = 1 + block_position(messages[1:]) if record.has_block and not record.in_lead else -1
    shown = iter(record.window)
    for index in range(1, len(messages)):
        what = "the turn's block" if index == block else next(shown).page_id
        names[index] = f"messages[{index}]: {what}"
    return names


def _what_was_shown(record: TurnRecord, pages: Mapping[str, Page]) -> dict[str, Any]:
    def about(page_id: str) -> dict[str, Any]:
        page = pages.get(page_id)
        if page is None:
            return {"id": page_id, "missing": True}
        return {"id": page_id, "type": page.kind.value, "who": who(page),
                "said": page.extra.get("said") or None, "position": page.anchor,
                "tokens": list(page.tokens)}  # fmt: skip

    return {
        "mapped": [{**about(x.page_id), "level": x.level, "excerpt_words": x.words or None}
                   for x in record.lines],  # fmt: skip
        "mapped_levels": levels(record.lines),
        "pinned": [{**about(s.page_id), "form": s.form or "verbatim"} for s in record.window],
        "more": record.more,
        "omitted": record.omitted,
        "terms": record.terms,
        "block_in": "leading" if record.in_lead else "message",
    }


async def _static(store: PageStore, path: Path, record: TurnRecord) -> dict[str, Any] | None:
    if not record.static:
        return None
    for span in path.spans:
        logged = await store.mutations_between(
            path.tenant, span.conv_id, record.static_turn, record.static_turn
        )
        for event in logged:
            if event.event == events.STATIC and event.page_id == record.static:
                try:
                    value = orjson.loads(event.detail)
                except orjson.JSONDecodeError:
                    return None
                return value if isinstance(value, dict) else None
    return None


async def _latest(store: PageStore, found: Found) -> tuple[int, list[Request]]:
    counters = found.info.state.get("counters")
    top = int(counters.get("turns", 0)) if isinstance(counters, Mapping) else 0
    for step in range(LATEST_WINDOWS):
        last = top - step * LATEST_WINDOW
        if last < 0:
            break
        first = max(0, last - LATEST_WINDOW + 1)
        requests = await turn_requests(store, found.path, first, last)
        if requests:
            turn = max(requests)
            return turn, requests[turn]
    raise not_found(f"Conversation {found.info.conv_id!r} has no memory turn to replay.")


async def _without_record(store: PageStore, found: Found, turn: int) -> dict[str, Any]:
    """A turn with no record: forwarded whole (below `vm.activate_above`), or logged
    before records were kept (then its per-page events still say what was in context)."""
    logged = []
    for span in found.path.spans:
        logged += await store.mutations_between(found.tenant, span.conv_id, turn, turn)
    if not logged:
        raise not_found(f"Turn {turn} of {found.info.conv_id!r} has no log: it was not a "
                        "memory turn (the request went upstream whole) or is not on this path.")
    view = in_context_at(logged, turn)
    return {
        "conversation": found.info.conv_id, "tenant": found.tenant, "turn": turn,
        "request": 0, "requests": 1, "upstream_request": None,
        "mapped": [{"id": pid, "level": level} for pid, level in view.items() if level],
        "pinned": [{"id": pid, "form": "verbatim"} for pid, level in view.items() if not level],
        "faults": [{"id": m.page_id, "level": m.level} for m in logged
                   if m.event == events.FAULT],
        "searches": [], "tokens": {},
        "check": {"same": None, "differences": [],
                  "note": "no turn record: the request went upstream whole, or was logged "
                          "before turn records were kept"},
    }  # fmt: skip
