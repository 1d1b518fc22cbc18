"""Answers to the VM tools, pure: `page_fault` over pages given to it, and `search_pages`
argument parsing and result rendering (the ranking itself is BM25, done by the caller).

Results are the tool message content (JSON):
    page_fault   {"id", "type", "level", "content", "tokens"} (+ "note" when the level was
                 raised to fit the fault token budget), or on error
                 {"error": "<text>", "code": <code>, "near": [ids...]} with code one of
                 unknown_id | already_mapped | limit_reached | bad_arguments | repeated_call
    search_pages {"query", "results": [{"id", "type", "hint", "score"}...]}, ordered by
                 proxy.vm.search_rank; a claim whose source message was also a hit names
                 it as "source", an older statement restated since names the newer page
                 as "superseded_by"; relaxed mode adds an "excerpt" (the level-2
                 abstract), strict mode never shows content.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.vm import mutations as events
from proxy.vm.mutations import Clock, Mutation
from proxy.vm.pages import ID_PREFIXES, Modality, Page, make_page_id, parse_page_id
from proxy.vm.search_rank import RankedHit

OK = "ok"
UNKNOWN_ID = "unknown_id"
ALREADY_MAPPED = "already_mapped"
LIMIT_REACHED = "limit_reached"
BAD_ARGUMENTS = "bad_arguments"
REPEATED_CALL = "repeated_call"

DEFAULT_LEVEL = 2
NEAR_SPAN = 3
MAX_NEAR = 5
SEARCH_LIMIT_MAX = 20
EXCERPT_WORDS = 40

Lookup = Mapping[str, Page] | Callable[[str], Page | None]
_LOOSE_ID = re.compile(r"([a-z]+)\W*_?\W*(\d+)", re.I)


@dataclass
class FaultState:
    """One client request's VM tool accounting. `in_view` maps page ids the model already
    sees to their level (mapped pages, pinned messages at 0, pages faulted this turn)."""

    max_faults: int
    max_tokens: int
    turn: int = 0
    in_view: dict[str, int] = field(default_factory=dict)
    faults: int = 0
    tokens: int = 0
    seen_calls: set[str] = field(default_factory=set)
    clock: Clock = time.time
    # What the next upstream prompt can still take (the loop's view of its budget); None:
    # `max_tokens` alone limits a fault.
    room: Callable[[], int] | None = None

    def tokens_left(self) -> int:
        left = self.max_tokens - self.tokens
        return left if self.room is None else min(left, self.room())

    @property
    def exhausted(self) -> bool:
        """True once the model may fault no more this turn (the loop withdraws the tools)."""
        return self.faults >= self.max_faults or self.tokens >= self.max_tokens

    def repeated(self, tool: str, arguments_json: str) -> bool:
        """Remember this call; True when the same call was already made this turn."""
        key = tool + "\0" + _canonical(arguments_json)
        if key in self.seen_calls:
            return True
        self.seen_calls.add(key)
        return False


@dataclass(frozen=True, slots=True)
class FaultOutcome:
    result_json: str
    page: Page | None
    level: int | None
    tokens: int
    code: str
    mutation: Mutation | None = None

    @property
    def ok(self) -> bool:
        return self.code == OK


class ToolArgumentError(ValueError):
    """A VM tool was called with arguments we cannot use; `result_json` tells the model."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.result_json = error_json(message, BAD_ARGUMENTS)


@dataclass(frozen=True, slots=True)
class SearchArgs:
    query: str
    limit: int = 5
    modality: Modality | None = None


def error_json(message: str, code: str, near: Sequence[str] = ()) -> str:
    body: dict[str, Any] = {"error": message, "code": code}
    if near:
        body["near"] = list(near)
    return orjson.dumps(body).decode()


def parse_fault_arguments(arguments_json: str) -> tuple[str, int]:
    """(page_id, level) from page_fault arguments; the level is clamped to 0..3."""
    args = _object(arguments_json)
    page_id = args.get("page_id")
    if not isinstance(page_id, str) or not page_id.strip():
        raise ToolArgumentError('page_fault needs "page_id", a string such as "msg_12"')
    level = args.get("target_level", DEFAULT_LEVEL)
    if isinstance(level, str) and level.strip().isdigit():
        level = int(level)
    if not isinstance(level, int) or isinstance(level, bool):
        level = DEFAULT_LEVEL
    return page_id.strip(), min(max(level, 0), 3)


def ids_to_load(arguments_json: str) -> list[str]:
    """The page ids a store-backed caller should fetch before `handle_page_fault`: the id
    asked for and its near neighbours (for the unknown-id answer)."""
    try:
        page_id, _ = parse_fault_arguments(arguments_json)
    except ToolArgumentError:
        return []
    return [page_id, *_neighbour_ids(page_id)]


def handle_page_fault(
    arguments_json: str, lookup: Lookup, state: FaultState, *, known_ids: Iterable[str] = ()
) -> FaultOutcome:
    """Answer one page_fault call and update `state`. `known_ids` (e.g. the manifest's)
    widen the near-match search for unknown ids."""
    try:
        page_id, level = parse_fault_arguments(arguments_json)
    except ToolArgumentError as exc:
        return FaultOutcome(exc.result_json, None, None, 0, BAD_ARGUMENTS)
    if state.repeated("page_fault", arguments_json):
        message = f"page_fault({page_id!r}) was already called this turn; use its result"
        return FaultOutcome(error_json(message, REPEATED_CALL), None, None, 0, REPEATED_CALL)
    page = _find(lookup, page_id)
    if page is None:
        near = near_ids(page_id, lookup, known_ids)
        message = f"no page {page_id!r} in this conversation"
        return FaultOutcome(error_json(message, UNKNOWN_ID, near), None, None, 0, UNKNOWN_ID)
    page_id = page.page_id
    seen = state.in_view.get(page_id)
    if seen is not None and seen <= level:
        message = f"{page_id} is already in view at level {seen}; see <VM:CONTEXT> or the messages"
        return FaultOutcome(error_json(message, ALREADY_MAPPED), None, None, 0, ALREADY_MAPPED)
    if state.faults >= state.max_faults:
        message = f"fault limit of {state.max_faults} per turn reached; answer with what you have"
        return FaultOutcome(error_json(message, LIMIT_REACHED), None, None, 0, LIMIT_REACHED)
    left = state.tokens_left()
    served = next((lv for lv in range(level, 4) if page.tokens[lv] <= left), None)
    if served is None:
        message = (
            f"{page_id} does not fit the {left} fault tokens left this turn; "
            "answer with what you have"
        )
        return FaultOutcome(error_json(message, LIMIT_REACHED), None, None, 0, LIMIT_REACHED)
    tokens = page.tokens[served]
    state.faults += 1
    state.tokens += tokens
    state.in_view[page_id] = served
    body: dict[str, Any] = {
        "id": page_id,
        "type": page.kind.value,
        "level": served,
        "content": page.rendering(served),
        "tokens": tokens,
    }
    if served != level:
        body["note"] = f"level {level} is over this turn's fault token budget; sent level {served}"
    record = events.mutation(state.turn, events.FAULT, page_id, level=served, at=state.clock())
    return FaultOutcome(orjson.dumps(body).decode(), page, served, tokens, OK, record)


def near_ids(page_id: str, lookup: Lookup, known_ids: Iterable[str] = ()) -> list[str]:
    """Existing ids close to `page_id`: same prefix and nearby numbers first, then the same
    number under other prefixes, then known ids sharing the prefix, nearest number first."""
    found: list[str] = [c for c in _neighbour_ids(page_id) if _find(lookup, c) is not None]
    parsed = _loose(page_id)
    if parsed is not None and len(found) < MAX_NEAR:
        prefix, number = parsed
        same = [
            (abs(n - number), i)
            for i in known_ids
            if (p := parse_page_id(i))
            and p[0] == prefix
            and (n := p[1]) != number
            and i not in found
        ]
        found.extend(i for _, i in sorted(same)[: MAX_NEAR - len(found)])
    return found[:MAX_NEAR]


def parse_search_arguments(arguments_json: str) -> SearchArgs:
    """query required; limit 1..20 (default 5); modality optional."""
    args = _object(arguments_json)
    query = args.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ToolArgumentError('search_pages needs "query", the words to look for')
    limit = args.get("limit", 5)
    if isinstance(limit, str) and limit.strip().isdigit():
        limit = int(limit)
    if not isinstance(limit, int) or isinstance(limit, bool):
        limit = 5
    raw_modality = args.get("modality")
    modality = None
    if raw_modality not in (None, ""):
        try:
            modality = Modality(str(raw_modality).lower())
        except ValueError:
            choices = ", ".join(m.value for m in Modality)
            raise ToolArgumentError(f"modality must be one of {choices}") from None
    return SearchArgs(query.strip(), min(max(limit, 1), SEARCH_LIMIT_MAX), modality)


def render_search_results(query: str, hits: Sequence[RankedHit], mode: str) -> str:
    results: list[dict[str, Any]] = []
    for hit in hits:
        page = hit.page
        entry: dict[str, Any] = {
            "id": page.page_id,
            "type": page.kind.value,
            "hint": page.hint,
            "score": round(float(hit.score), 3),
        }
        if hit.source is not None:
            entry["source"] = hit.source
        if hit.superseded_by is not None:
            entry["superseded_by"] = hit.superseded_by
        if mode == "relaxed":
            words = page.rendering(2).split()
            entry["excerpt"] = " ".join(words[:EXCERPT_WORDS]) + (
                " …" if len(words) > EXCERPT_WORDS else ""
            )
        results.append(entry)
    return orjson.dumps({"query": query, "results": results}).decode()


def _object(arguments_json: str) -> dict[str, Any]:
    try:
        args = orjson.loads(arguments_json or "{}")
    except orjson.JSONDecodeError:
        raise ToolArgumentError("arguments are not valid JSON") from None
    if not isinstance(args, dict):
        raise ToolArgumentError("arguments must be a JSON object")
    return args


def _canonical(arguments_json: str) -> str:
    try:
        return orjson.dumps(orjson.loads(arguments_json), option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONDecodeError:
        return arguments_json


def _find(lookup: Lookup, page_id: str) -> Page | None:
    candidates = [page_id]
    loose = _loose(page_id)
    if loose is not None:
        canonical = make_page_id(*loose)
        if canonical != page_id:
            candidates.append(canonical)
    for candidate in candidates:
        page = lookup.get(candidate) if isinstance(lookup, Mapping) else lookup(candidate)
        if page is not None:
            return page
    return None


def _loose(page_id: str) -> tuple[str, int] | None:
    """`msg_12`, `MSG 12`, `msg-12`, `message_12` -> ("msg", 12) when the prefix is known."""
    match = _LOOSE_ID.fullmatch(page_id.strip())
    if match is None:
        return None
    word = match.group(1).lower()
    prefix = next((p for p in ID_PREFIXES if word.startswith(p) or p.startswith(word)), None)
    if word.startswith("mess"):
        prefix = "msg"
    elif word.startswith(("segment", "summ")):
        prefix = "seg"
    elif word.startswith(("image", "pic")):
        prefix = "img"
    return (prefix, int(match.group(2))) if prefix else None


def _neighbour_ids(page_id: str) -> list[str]:
    parsed = _loose(page_id)
    if parsed is None:
        return []
    prefix, number = parsed
    ids = [
        make_page_id(prefix, n)
        for d in range(1, NEAR_SPAN + 1)
        for n in (number - d, number + d)
        if n >= 0
    ]
    ids.extend(make_page_id(p, number) for p in ID_PREFIXES if p != prefix)
    return ids
