"""An in-memory stand-in for the fault loop's use of the core: ingest, summaries, search,
prefetch and pack, with a fixed clock, so whole upstream bodies are byte-stable."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.config import VMSettings
from proxy.loop.prepare import pack_options
from proxy.store.codec import page_search_tokens
from proxy.tokens import TokenCounter, counter_for_model
from proxy.vm.bm25 import BM25Index, search_tokens
from proxy.vm.frame import Frame
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.packer import PackedRequest, pack_request
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page
from proxy.vm.prefetch import around_ids, gather_candidates, plan_prefetch
from proxy.vm.segments import build_summary, record_summary


def clock() -> float:
    return 1_700_000_000.0


class Memory:
    """One conversation's pages, counters, table and search index; with `frames`, also the
    frame each pack leaves for the next (as the fault loop keeps it), else every pack
    compacts."""

    def __init__(self, settings: VMSettings, model: str = "gpt-4o", frames: bool = False) -> None:
        self.settings = settings
        self.counter: TokenCounter = counter_for_model(model)
        self.counters = Counters()
        self.table = PageTable()
        self.index: BM25Index[str] = BM25Index()
        self.pages: dict[str, Page] = {}
        self.mutations: list[Any] = []
        self.frames = frames
        self.frame: Frame | None = None

    def ingest(self, messages: Sequence[Mapping[str, Any]]) -> list[Page]:
        result = ingest_messages(
            messages,
            first_position=self.counters.messages,
            counters=self.counters,
            counter=self.counter,
            segment_turns=self.settings.segment_turns,
            clock=clock,
        )
        for page in result.pages:
            self._add(page)
        self.mutations.extend(result.mutations)
        jobs = list(result.segment_jobs)
        while jobs:
            job = jobs.pop(0)
            covered = [self.pages[i] for i in job.page_ids() if i in self.pages]
            summary = build_summary(job, covered, counter=self.counter, clock=clock)
            self._add(summary)
            jobs.extend(record_summary(self.counters, summary))
        return result.pages

    def _add(self, page: Page) -> None:
        self.pages[page.page_id] = page
        self.index.add_tokens(page.page_id, page_search_tokens(page))

    def pack(self, body: Mapping[str, Any], *, mode: str = "strict") -> PackedRequest:
        messages = list(body["messages"])
        new = messages[self.counters.messages :]
        self.ingest(new)
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        text = last_user.get("content") if isinstance(last_user.get("content"), str) else ""
        turn = self.counters.turns
        plan = plan_prefetch(
            self.counters,
            self.table,
            turn=turn,
            user_text=text or "",
            pin_last_turns=self.settings.pin_last_turns,
        )
        hits = [(self.pages[k], s) for k, s in self.index.search(plan.query, plan.search_limit)]
        near = around_ids([p for p, _ in hits], plan, self.counters.preamble)
        loaded = [self.pages[i] for i in [*plan.page_ids(), *near] if i in self.pages]
        frame = self.frame if self.frames else None
        start = plan.pinned_from
        if frame is not None and self.counters.preamble <= frame.start <= plan.pinned_from:
            start = frame.start
        else:
            frame = None
        tail = [self.pages[f"msg_{p}"] for p in range(start, self.counters.messages)]
        candidates = gather_candidates(
            hits=hits, pages=loaded, plan=plan, exclude=[p.page_id for p in tail]
        )
        packed = pack_request(
            body,
            system_messages=messages[: self.counters.preamble],
            tail=tail,
            candidates=candidates,
            table=self.table,
            options=pack_options(self.settings),
            mode=mode,
            counter=self.counter,
            turn=turn,
            terms=search_tokens(text or ""),
            around={p.anchor: p for p in loaded if p.page_id.startswith("msg_")},
            total_pages=len(self.pages),
            clock=clock,
            frame=frame,
        )
        self.table.note_mapped(packed.mapped, turn)
        self.frame = packed.frame
        return packed


def dumps(body: Any) -> str:
    return json.dumps(body, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
