"""The admin API's reads: tenants, conversations, pages, search, the fork tree, the
timeline of turns. Each returns a JSON-ready dict; a conversation or page that does not
exist is a ProxyError 404."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from proxy.errors import ProxyError
from proxy.store.base import ConversationInfo, PageStore, Path
from proxy.vm import mutations as events
from proxy.vm.bm25 import search_tokens
from proxy.vm.faults import SEARCH_LIMIT_MAX, render_search_results
from proxy.vm.pages import ID_PREFIXES, Modality, Page
from proxy.vm.search_rank import POOL_FACTOR, refine_hits
from proxy.vm.turn_record import RecordError, TurnRecord

MAX_LIMIT = 500
# Turns and message positions a timeline or page listing shows at once, by default.
DEFAULT_TURNS = 200
DEFAULT_POSITIONS = 100


# Turns, positions and limits are far below this; past it a store's integer (SQLite's, 64
# bits) or the JSON encoder would fail: a 400, not a 500 (the review).
LARGEST = 2**31 - 1


def not_found(message: str) -> ProxyError:
    return ProxyError(message, status_code=404, error_type="not_found_error", code="not_found")


def bad_request(message: str, param: str) -> ProxyError:
    return ProxyError(message, status_code=400, error_type="invalid_request_error",
                      param=param)  # fmt: skip


def when(epoch: float) -> str:
    """Seconds since the epoch as ISO 8601 UTC."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")  # fmt: skip


def limited(value: int | None, default: int) -> int:
    if value is None:
        return default
    if value < 1:
        raise bad_request("limit must be at least 1", "limit")
    return min(value, MAX_LIMIT)


# -- tenants and conversations ---------------------------------------------------------------


async def tenants(store: PageStore) -> dict[str, Any]:
    rows = await store.list_tenants()
    return {"data": [{"tenant": t.tenant, "conversations": t.conversations,
                      "last_used": when(t.last_used)} for t in rows]}  # fmt: skip


def conversation_summary(info: ConversationInfo) -> dict[str, Any]:
    """The fields DESIGN.md names for a conversation (id, session, tenant, turns, pages,
    tokens, last_used), and its place in the fork tree."""
    state = info.state
    counters = state.get("counters") if isinstance(state.get("counters"), Mapping) else {}
    assert isinstance(counters, Mapping)
    pages = sum(int(counters.get(k, 0)) for k in ("messages", "claims", "images", "segments"))
    return {
        "id": info.conv_id,
        "session": info.sessions[0] if info.sessions else None,
        "sessions": list(info.sessions),
        "tenant": info.tenant,
        "turns": int(counters.get("turns", 0)),
        "pages": pages,
        "messages": info.length,
        "tokens": int(state.get("tokens", 0)),
        "last_used": when(info.updated_at),
        "parent": info.parent_id,
        "fork_at": info.fork_at if info.parent_id else None,
    }


async def conversations(
    store: PageStore,
    *,
    tenant: str | None = None,
    session: str | None = None,
    before: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Newest first; `next` is the cursor of the following page (None: the last page)."""
    size = limited(limit, 50)
    cursor = _cursor(before) if before else None
    rows = await store.list_conversations(tenant=tenant, session=session, before=cursor,
                                          limit=size)  # fmt: skip
    following = None
    if len(rows) == size:
        last = rows[-1]
        following = f"{last.updated_at!r}:{last.conv_id}"
    return {"data": [conversation_summary(r) for r in rows], "next": following}


def _cursor(text: str) -> tuple[float, str]:
    at, _, conv = text.partition(":")
    try:
        return float(at), conv
    except ValueError:
        raise bad_request("before must be a cursor from a previous page's next", "before") from None


@dataclass(frozen=True, slots=True)
class Found:
    """A conversation found by id: its row and its path."""

    info: ConversationInfo
    path: Path

    @property
    def tenant(self) -> str:
        return self.info.tenant


async def find(store: PageStore, conv_id: str, tenant: str | None = None) -> Found:
    """The conversation `conv_id` (ids are unique in practice; `tenant` settles a clash)."""
    rows = await store.list_conversations(conv_id=conv_id, tenant=tenant, limit=2)
    if not rows:
        raise not_found(f"No conversation {conv_id!r}.")
    if len(rows) > 1:
        raise ProxyError(f"Conversation id {conv_id!r} exists under several tenants; "
                         "name one with ?tenant=.", status_code=409, error_type="conflict",
                         param="tenant")  # fmt: skip
    return Found(rows[0], await store.path(rows[0].tenant, conv_id))


async def conversation(store: PageStore, found: Found) -> dict[str, Any]:
    summary = conversation_summary(found.info)
    summary["path"] = [{"id": s.conv_id, "from": s.lo, "to": s.hi} for s in found.path.spans]
    return summary


# -- pages -----------------------------------------------------------------------------------


def page_summary(page: Page, path: Path) -> dict[str, Any]:
    extra = page.extra
    return {
        "id": page.page_id,
        "type": page.kind.value,
        "modality": page.modality.value,
        "position": page.anchor,
        "turn": page.turn,
        "role": page.role,
        "speaker": extra.get("speaker") or None,
        "said": extra.get("said") or None,
        "tokens": list(page.tokens),
        "hint": page.hint,
        "created_at": when(page.created_at) if page.created_at else None,
        "provenance": {
            "conversation": path.owner_of(page.anchor),
            "message": page.is_message,
            "from_position": None if page.is_message else page.anchor,
            "covers": list(page.covers),
            "chain_hash": page.chain_hash or None,
        },
    }


async def pages(
    store: PageStore, found: Found, *, start: int = 0, limit: int | None = None
) -> dict[str, Any]:
    """The pages of message positions `start..start+limit-1` (messages and what was drawn
    from them), and where the next such window starts."""
    size = limited(limit, DEFAULT_POSITIONS)
    if start < 0:
        raise bad_request("from must be 0 or more", "from")
    length = found.info.length
    stop = min(start + size, length)
    listed = await store.pages_in_range(found.path, start, stop, prefixes=ID_PREFIXES)
    return {
        "data": [page_summary(p, found.path) for p in listed],
        "from": start,
        "to": stop,
        "length": length,
        "next": stop if stop < length else None,
    }


async def page(store: PageStore, found: Found, page_id: str) -> dict[str, Any]:
    got = (await store.get_pages(found.path, [page_id])).get(page_id)
    if got is None:
        raise not_found(f"No page {page_id!r} on conversation {found.info.conv_id!r}.")
    summary = page_summary(got, found.path)
    summary["levels"] = [
        {"level": level, "tokens": got.tokens[level], "text": got.rendering(level)}
        for level in range(4)
    ]
    summary["message"] = got.message
    return summary


async def search(
    store: PageStore,
    found: Found,
    query: str,
    *,
    limit: int | None = 5,
    mode: str = "strict",
    modality: str | None = None,
) -> dict[str, Any]:
    """What `search_pages(query)` would answer on this conversation (with nothing in view),
    and the ranked hits behind it."""
    if not query.strip():
        raise bad_request("q must not be empty", "q")
    size = min(limited(limit, 5), SEARCH_LIMIT_MAX)
    kind = None
    if modality is not None:
        try:
            kind = Modality(modality)
        except ValueError:
            raise bad_request(f"unknown modality {modality!r}", "modality") from None
    hits = await store.search(found.path, query, limit=size * POOL_FACTOR, modality=kind)
    ranked = refine_hits(query, [(h.page, h.score) for h in hits], size)
    answer = orjson.loads(render_search_results(query, ranked, mode, search_tokens(query)))
    scores = {h.page.page_id: h.score for h in hits}
    answer["hits"] = [
        {**page_summary(r.page, found.path), "score": scores.get(r.page.page_id)}
        for r in ranked
    ]
    return dict(answer)


async def tree(store: PageStore, found: Found) -> dict[str, Any]:
    """Every conversation forked from this one's root, with this one's path marked."""
    root = found.path.spans[-1].conv_id
    on_path = {s.conv_id for s in found.path.spans}
    nodes = await store.conversation_tree(found.tenant, root)
    return {
        "root": root,
        "data": [
            {"id": n.conv_id, "parent": n.parent_id, "fork_at": n.fork_at if n.parent_id else None,
             "messages": n.length, "last_used": when(n.updated_at), "sessions": list(n.sessions),
             "on_path": n.conv_id in on_path}
            for n in nodes
        ],  # fmt: skip
    }


# -- turns -----------------------------------------------------------------------------------


@dataclass
class Request:
    """One request of a turn: its record and the events logged after it."""

    record: TurnRecord
    conv_id: str
    faults: list[tuple[str, int | None]]
    searches: list[dict[str, Any]]
    cited: list[str]


async def turn_requests(
    store: PageStore, path: Path, first: int, last: int
) -> dict[int, list[Request]]:
    """The records of turns `first..last` on `path` (a record belongs to the path when the
    answer it led to is on it), with each record's faults, searches and citations."""
    found: dict[int, list[Request]] = {}
    for span in path.spans:
        logged = await store.mutations_between(path.tenant, span.conv_id, first, last)
        current: Request | None = None
        for event in logged:
            if event.event == events.TURN:
                current = None
                try:
                    record = TurnRecord.from_detail(event.turn, event.detail)
                except RecordError:
                    continue
                if not _on(span.lo, span.hi, record.position):
                    continue
                current = Request(record, span.conv_id, [], [], [])
                found.setdefault(event.turn, []).append(current)
            elif current is None or event.turn != current.record.turn:
                continue
            elif event.event == events.FAULT:
                current.faults.append((event.page_id, event.level))
            elif event.event == events.SEARCH:
                current.searches.append(_json_object(event.detail))
            elif event.event == events.CITE:
                current.cited.append(event.page_id)
    for requests in found.values():
        requests.sort(key=lambda r: r.record.position)
    return found


def _on(lo: int, hi: int | None, position: int) -> bool:
    return lo <= position and (hi is None or position < hi)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def levels(lines: Sequence[Any]) -> dict[str, int]:
    counts = {"0": 0, "1": 0, "2": 0, "3": 0, "excerpts": 0}
    for line in lines:
        counts[str(line.level)] = counts.get(str(line.level), 0) + 1
        counts["excerpts"] += line.words > 0
    return counts


async def timeline(
    store: PageStore, found: Found, *, first: int | None = None, limit: int | None = None
) -> dict[str, Any]:
    """One entry per memory turn in a window of turns (the latest by default): tokens sent
    against the full history, faults, searches, pages shown by level."""
    size = limited(limit, DEFAULT_TURNS)
    counters = found.info.state.get("counters")
    turns = int(counters.get("turns", 0)) if isinstance(counters, Mapping) else 0
    start = max(0, turns - size + 1) if first is None else max(0, first)
    stop = start + size - 1
    requests = await turn_requests(store, found.path, start, stop)
    data = []
    for turn in sorted(requests):
        for index, request in enumerate(requests[turn]):
            record, loop = request.record, request.record.loop
            data.append({
                "turn": turn, "request": index, "position": record.position,
                "prompt": record.tokens.get("prompt"), "sent": loop.get("sent"),
                "full": loop.get("full"), "calls": loop.get("calls"),
                "faults": len(request.faults), "searches": len(request.searches),
                "pinned": len(record.window), "mapped": levels(record.lines),
                "mode": record.mode,
            })  # fmt: skip
    return {
        "data": data,
        "from": start,
        "to": stop,
        "turns": turns,
        "previous": max(0, start - size) if start > 0 else None,
        "next": stop + 1 if stop < turns else None,
    }
