"""Answering the model's VM tool calls against the store, with the per-turn guards.

The pure handlers (proxy.vm.faults) decide; this module fetches what they need (the asked
page and its neighbours, search hits on the conversation's path) and withdraws the tools
once a limit is hit, telling the model so in the tool result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson

from proxy.store.base import PageStore, Path, SearchHit
from proxy.vm.bm25 import search_tokens
from proxy.vm.faults import (
    LIMIT_REACHED,
    REPEATED_CALL,
    FaultState,
    ToolArgumentError,
    error_json,
    handle_page_fault,
    ids_to_load,
    parse_search_arguments,
    render_search_results,
)
from proxy.vm.mutations import SEARCH, Mutation
from proxy.vm.pages import Modality
from proxy.vm.search_rank import POOL_FACTOR, refine_hits
from proxy.vm.tools import PAGE_FAULT, SEARCH_PAGES

WITHDRAWN_NOTE = "Memory tools are withdrawn for the rest of this turn: answer now."

# (path, query, limit, modality) -> hits, best first
Search = Callable[[Path, str, int, Modality | None], Awaitable[list[SearchHit]]]


class FaultResolver:
    def __init__(
        self,
        store: PageStore,
        path: Path,
        state: FaultState,
        *,
        mode: str,
        known_ids: Sequence[str] = (),
        search: Search | None = None,
    ) -> None:
        """`search`: how `search_pages` ranks (default: the store's BM25; with embeddings
        on, proxy.loop.meaning's fused search)."""
        self._store = store
        self._search_pages: Search = search or (
            lambda path, query, limit, modality: store.search(
                path, query, limit=limit, modality=modality
            )
        )
        self._path = path
        self.state = state
        self._mode = mode
        self._known_ids = list(known_ids)
        self._faulted: dict[str, int] = {}
        self.mutations: list[Mutation] = []
        self.searches = 0
        self.withdrawn = False
        self.reason = ""

    @property
    def faults(self) -> int:
        return self.state.faults

    def withdraw(self, reason: str) -> None:
        if not self.withdrawn:
            self.withdrawn, self.reason = True, reason

    def faulted_levels(self) -> dict[str, int]:
        return dict(self._faulted)

    def mapped_levels(self) -> dict[str, int]:
        return dict(self.state.in_view)

    async def resolve(
        self, calls: Sequence[Mapping[str, Any]], names: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """One tool message per call, in order. `names`: upstream tool name -> canonical."""
        results: list[dict[str, Any]] = []
        for call in calls:
            function = call.get("function") or {}
            canonical = names.get(str(function.get("name") or ""))
            arguments = str(function.get("arguments") or "{}")
            if self.withdrawn:
                content = error_json(f"{self.reason}. {WITHDRAWN_NOTE}", LIMIT_REACHED)
            elif canonical == PAGE_FAULT:
                content = await self._fault(arguments)
            elif canonical == SEARCH_PAGES:
                content = await self._search(arguments)
            else:
                name = function.get("name")
                content = error_json(f"unknown memory tool {name!r}", "bad_arguments")
            call_id = str(call.get("id") or "")
            results.append({"role": "tool", "tool_call_id": call_id, "content": content})
        return results

    async def _fault(self, arguments: str) -> str:
        ids = ids_to_load(arguments)
        pages = await self._store.get_pages(self._path, ids) if ids else {}
        outcome = handle_page_fault(arguments, pages, self.state, known_ids=self._known_ids)
        if outcome.mutation is not None:
            self.mutations.append(outcome.mutation)
        if outcome.page is not None and outcome.level is not None:
            self._faulted[outcome.page.page_id] = outcome.level
        if outcome.code == LIMIT_REACHED:
            self.withdraw("The page-fault limit of this turn is reached")
            return _with_note(outcome.result_json, WITHDRAWN_NOTE)
        if self.state.exhausted:
            self.withdraw("The page-fault limit of this turn is reached")
            return _with_note(outcome.result_json, WITHDRAWN_NOTE)
        return outcome.result_json

    async def _search(self, arguments: str) -> str:
        try:
            args = parse_search_arguments(arguments)
        except ToolArgumentError as exc:
            return exc.result_json
        if self.state.repeated("search_pages", arguments):
            return error_json(
                "search_pages was already called with these arguments; use its result",
                REPEATED_CALL,
            )
        # Pages the model already sees in full (the pinned turns, the question itself) are
        # no news to it: leave them out rather than spend results on them.
        seen = {pid for pid, level in self.state.in_view.items() if level == 0}
        hits = await self._search_pages(
            self._path, args.query, args.limit * POOL_FACTOR + len(seen), args.modality
        )
        fresh = [(h.page, h.score) for h in hits if h.page.page_id not in seen]
        ranked = refine_hits(args.query, fresh, args.limit)
        self.searches += 1
        found = {"query": args.query, "hits": [hit.page.page_id for hit in ranked]}
        self.mutations.append(Mutation(self.state.turn, SEARCH, "", detail=orjson.dumps(
            found).decode(), at=self.state.clock()))  # fmt: skip
        terms = search_tokens(args.query)
        return render_search_results(args.query, ranked, self._mode, terms)


def _with_note(result_json: str, note: str) -> str:
    body = orjson.loads(result_json)
    if isinstance(body, dict):
        body["note"] = f"{body['note']} {note}" if "note" in body else note
        return orjson.dumps(body).decode()
    return result_json
