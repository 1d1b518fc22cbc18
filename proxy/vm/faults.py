"""Answers to the VM tools, pure: `page_fault` over pages given to it, and `search_pages`
argument parsing and result rendering (the ranking itself is BM25, done by the caller).

Results are the tool message content (JSON):
    page_fault   {"id", "level", "content"} (+ "type" for a page that is no message, + "note"
                 when the level was raised to fit the fault token budget); a message's
                 content is a transcript as the context shows it ("[msg_7] Maya: ..."
                 under the date said), with the messages right before and after it (a
                 question's answer, an answer's question) when they fit; or on error
                 {"error": "<text>", "code": <code>, "near": [ids...]} with code one of
                 unknown_id | already_mapped | limit_reached | bad_arguments | repeated_call
    search_pages {"query", "results": [{"id", "hint"}...]}, ordered by
                 proxy.vm.search_rank, the hint naming who said the page and when, then
                 the passage that matched the query ("Maya, 8 May 2023: … passage …";
                 longer in relaxed mode); a claim whose source
                 message was also a hit names it as "source", an older statement restated
                 since names the newer page as "superseded_by".
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.vm import mutations as events
from proxy.vm.context import header
from proxy.vm.escape import escape_block
from proxy.vm.excerpt import excerpt
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
# A neighbour of a faulted message comes whole up to this size, else as its abstract.
AROUND_FULL_TOKENS = 80
# Tokens a fault's result adds besides its page (its JSON), and a neighbour's line besides
# its text (its header): counted against the turn's fault tokens.
RESULT_OVERHEAD = 20
LINE_OVERHEAD = 10
NEAR_SPAN = 3
MAX_NEAR = 5
SEARCH_LIMIT_MAX = 20
# Words of the matching passage a search result shows (relaxed mode: more).
HINT_WORDS = 16
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
    tokens: int = 0  # of faulted pages (and the turns brought with them): max_tokens' count
    spent: int = 0  # ... with the JSON of their results: what the prompt grows by
    seen_calls: set[str] = field(default_factory=set)
    clock: Clock = time.time
    # What the next upstream prompt can still take (the loop's view of its budget); None:
    # `max_tokens` alone limits a fault.
    room: Callable[[], int] | None = None

    def tokens_left(self, overhead: int = 0) -> int:
        """Tokens a page may still take when its result adds `overhead` to the prompt."""
        left = self.max_tokens - self.tokens
        return left if self.room is None else min(left, self.room() - overhead)

    def take(self, tokens: int, overhead: int) -> None:
        self.tokens += tokens
        self.spent += tokens + overhead

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
        message = f"the limit of {state.max_faults} faults per turn is reached"
        return FaultOutcome(error_json(message, LIMIT_REACHED), None, None, 0, LIMIT_REACHED)
    left = state.tokens_left(RESULT_OVERHEAD)
    served = next((lv for lv in range(level, 4) if page.tokens[lv] <= left), None)
    if served is None or (seen is not None and served >= seen):
        # (A page in view cut short, a pinned message, gains nothing from a level that
        # shows less than it does.)
        message = f"{page_id} does not fit the room left this turn"
        if seen is not None:
            message += "; as much of it as fits is in view"
        return FaultOutcome(error_json(message, LIMIT_REACHED), None, None, 0, LIMIT_REACHED)
    tokens = page.tokens[served]
    state.faults += 1
    state.take(tokens, RESULT_OVERHEAD)
    state.in_view[page_id] = served
    body: dict[str, Any] = {"id": page_id, "level": served}
    if page.page_id.startswith("msg_"):
        lines = [(page, served)]
        for neighbour, shown in _around(page, lookup, state):
            at = 0 if neighbour.anchor < page.anchor else len(lines)
            lines.insert(at, (neighbour, shown))
        body["content"] = _transcript(lines)
    else:
        body["type"] = page.kind.value
        body["content"] = page.rendering(served)
    if served != level:
        body["note"] = f"level {level} is over this turn's fault token budget; sent level {served}"
    record = events.mutation(state.turn, events.FAULT, page_id, level=served, at=state.clock())
    return FaultOutcome(orjson.dumps(body).decode(), page, served, tokens, OK, record)


def attribution(page: Page) -> str:
    """Who said a page and when, as a search result names them ("Maya, 8 May 2023"): a
    message by its speaker (or role), any other page by its type."""
    speaker = page.extra.get("speaker")
    if speaker:
        who = str(speaker)
    elif page.page_id.startswith("msg_") and page.role:
        who = page.role
    else:
        who = page.kind.value
    when = page.extra.get("said")
    return f"{who}, {when}" if when else who


def _around(page: Page, lookup: Lookup, state: FaultState) -> list[tuple[Page, int]]:
    """The messages right before and after a faulted message, when loaded, not in view and
    within the turn's fault tokens: a question's answer, an answer's question. They come
    whole when short, else as their abstract; they count as seen but not as faults."""
    out: list[tuple[Page, int]] = []
    for position in (page.anchor + 1, page.anchor - 1):
        near = _find(lookup, make_page_id("msg", position))
        if near is None or near.page_id in state.in_view or near.message is None:
            continue
        if near.role in ("system", "developer"):
            continue
        level = 0 if near.tokens[0] <= AROUND_FULL_TOKENS else 2
        tokens = near.tokens[level]
        if tokens > state.tokens_left(LINE_OVERHEAD):
            continue
        state.take(tokens, LINE_OVERHEAD)
        state.in_view[near.page_id] = level
        out.append((near, level))
    return out


def _transcript(lines: Sequence[tuple[Page, int]]) -> str:
    """Message pages as the context shows them: a line each under the date said."""
    out: list[str] = []
    date = ""
    for page, level in lines:
        when = page.extra.get("said")
        if isinstance(when, str) and when and when != date:
            out.append(f"— {escape_block(when)} —")
            date = when
        out.append(header(page, level) + escape_block(page.rendering(level)))
    return "\n".join(out)


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


def render_search_results(
    query: str, hits: Sequence[RankedHit], mode: str, terms: Collection[str] = ()
) -> str:
    """Each hit as its id, who said it and when, and the passage that matched the query
    (`terms`: its search terms), not the page's first words."""
    words = EXCERPT_WORDS if mode == "relaxed" else HINT_WORDS
    results: list[dict[str, Any]] = []
    for hit in hits:
        page = hit.page
        passage = excerpt(page.text, terms, words) if terms else page.hint
        entry: dict[str, Any] = {"id": page.page_id, "hint": f"{attribution(page)}: {passage}"}
        if hit.source is not None:
            entry["source"] = hit.source
        if hit.superseded_by is not None:
            entry["superseded_by"] = hit.superseded_by
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
