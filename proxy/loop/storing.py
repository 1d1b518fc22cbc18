"""Turning new messages into stored pages: the VM core's ingest plus what needs the store
(segment summaries over pages stored earlier, the state a fork starts from).

Conversation state (`Conversation.state`, and a snapshot in each message page's
`extra["after"]` so that a fork at any position knows where it starts):
    hash      chain hash of the last message
    tokens    what the history up to here costs when resent verbatim (sum of msg_tokens)
    counters  proxy.vm.ingest.Counters
    table     proxy.vm.page_table.PageTable (conversation state only)
    frame     proxy.vm.frame.Frame (conversation state only)
    replay    proxy.loop.turn_log: the static parts logged, the last prompt's digests
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from proxy.loop.derive import (
    lean_ingest,
    lean_since,
    snapshot,
    split_by_owner,
    state_from_page,
)
from proxy.loop.offload import text_chars
from proxy.loop.placement import NewPages, cut_path
from proxy.store.base import Conversation, PageStore, Path
from proxy.tokens import TokenCounter
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.mutations import Clock, Mutation
from proxy.vm.pages import Page
from proxy.vm.segments import SegmentJob, build_summary, record_summary
from proxy.vm.summary_pages import CLAIM_IDS, reserve_claims

# Told the segment summary pages an ingest made for `path`'s leaf (before they are stored):
# proxy.loop.summarizer has a model rewrite them.
SummariesMade = Callable[[Path, Sequence[Page]], None]

# Conversation-state entries of the fault loop that new messages carry over unchanged.
_CARRIED = ("table", "frame", "replay")
# A message with more text than this is turned into pages in a worker thread: its
# analysis (bounded by proxy.vm.bounds) takes milliseconds that other requests must not
# wait for; below it the thread hop would cost more than it saves.
OFF_LOOP_CHARS = 16_384


def start_state() -> dict[str, Any]:
    """The state of a conversation before its first message."""
    return {"hash": "", "tokens": 0, "counters": Counters().to_dict()}


class Ingester:
    """The `Ingest` and `StateAt` callables of proxy.loop.conversations.Conversations."""

    def __init__(
        self,
        counter_for: Callable[[], TokenCounter],
        segment_turns: int,
        clock: Clock = time.time,
        *,
        lean_up_to: int | None = None,
        on_summaries: SummariesMade | None = None,
        model_claims: int = 0,
    ) -> None:
        """`lean_up_to`: while a conversation's resent history costs at most this many
        tokens, its messages are stored as lean pages (proxy.loop.derive); None: always
        in full. `on_summaries` is told the segment summaries made, each of which keeps
        `model_claims` claim ids for the model rewriting it (proxy.loop.summarizer)."""
        self._on_summaries = on_summaries
        self._model_claims = model_claims
        self._counter_for = counter_for
        self._segment_turns = segment_turns
        self._clock = clock
        self._lean_up_to = lean_up_to

    async def state_at(
        self,
        store: PageStore,
        tenant: str,
        path: Path,
        position: int,
        conv: Conversation | None = None,
    ) -> dict[str, Any]:
        """The state right after `position`; `conv`, when given, is the path's leaf as
        just read (saves reading it again)."""
        if position < 0:
            return start_state()
        if conv is None or conv.conv_id != path.leaf:
            conv = await store.get_conversation(tenant, path.leaf)
        if conv is not None and conv.length == position + 1 and conv.state:
            return dict(conv.state)
        page_id = f"msg_{position}"
        # Read on the path cut after it, whose leaf owns it: a fork created deferred after
        # `position` holds no page of it, and is not waited for (stored_rows.branch_path).
        found = await store.get_pages(cut_path(path, position + 1), [page_id])
        page = found.get(page_id)
        if page is None or "after" not in page.extra:
            raise LookupError(f"no stored state after position {position} of {path.leaf}")
        return state_from_page(page)

    def lean_tokens(
        self, messages: Sequence[Mapping[str, Any]], before: Mapping[str, Any]
    ) -> int | None:
        """What the history costs resent after `messages`, counted as their lean pages count
        it (proxy.vm.lean: each message's `msg_tokens`), without making them; None when
        pages are not stored lean, or for a tool exchange, whose results are counted with
        the names of the calls they answer (which the pages carry from one to the next)."""
        if self._lean_up_to is None:
            return None
        counter = self._counter_for()
        tokens = int(before.get("tokens", 0))
        for message in messages:
            if message.get("role") == "tool" or message.get("tool_calls"):
                return None
            tokens += counter.message(message)
        return tokens

    async def ingest(
        self,
        store: PageStore,
        tenant: str,
        path: Path,
        first: int,
        messages: Sequence[dict[str, Any]],
        hashes: Sequence[str],
        before: dict[str, Any],
    ) -> NewPages:
        counter = self._counter_for()
        # A history already past the limit stays past it (tokens only add up): its new
        # messages are stored in full without making lean pages first.
        if self._lean_up_to is not None and int(before.get("tokens", 0)) <= self._lean_up_to:
            made = lean_ingest(first, messages, hashes, before, counter, self._clock(), _CARRIED)
            if int(made.state["tokens"]) <= self._lean_up_to:
                return made
        # In full, from the first lean page on.
        start, earlier, earlier_hashes, at_start = await lean_since(
            store, tenant, path, first, before, self.state_at
        )
        if earlier:
            carried = {k: v for k, v in before.items() if k in _CARRIED}
            first, before = start, {**at_start, **carried}
            messages, hashes = [*earlier, *messages], [*earlier_hashes, *hashes]
        counters = Counters.from_dict(before.get("counters"))
        tokens = int(before.get("tokens", 0))
        pages: list[Page] = []
        derived: list[Page] = []
        jobs: list[SegmentJob] = []
        reserved: dict[str, list[str]] = {}
        mutations: list[Mutation] = []
        # One message at a time, so each message page records the state right after it.
        for offset, message in enumerate(messages):
            make = functools.partial(
                ingest_messages,
                [message],
                first_position=first + offset,
                counters=counters,
                counter=counter,
                segment_turns=self._segment_turns,
                chain_hashes=hashes[offset : offset + 1],
                clock=self._clock,
            )
            big = text_chars(message) > OFF_LOOP_CHARS
            result = await asyncio.to_thread(make) if big else make()
            page, *others = result.pages
            for job in result.segment_jobs if self._model_claims else ():
                # Before the snapshot, so a fork from here on numbers its claims after them.
                reserved[job.seg_id] = reserve_claims(counters, self._model_claims)
            tokens += int(page.extra.get("msg_tokens", 0))
            after = snapshot(counters, tokens)
            pages.append(dataclasses.replace(page, extra={**page.extra, "after": after}))
            derived.extend(others)
            jobs.extend(result.segment_jobs)
            mutations.extend(result.mutations)
        pages.extend(derived)
        summaries = await self._summaries(store, path, jobs, pages, counters, counter)
        for summary in summaries:
            if summary.page_id in reserved:
                summary.extra[CLAIM_IDS] = reserved[summary.page_id]
        pages.extend(summaries)
        if summaries and self._on_summaries is not None:
            # Not those of positions another conversation owns (a fork deriving its
            # parent's stretch): their claims would be numbered by the wrong counters.
            own = [p for p in summaries if path.owner_of(p.anchor) == path.leaf]
            self._on_summaries(path, own)
        state = {
            **{k: v for k, v in before.items() if k in _CARRIED},
            "hash": hashes[-1] if hashes else before.get("hash", ""),
            "tokens": tokens,
            "counters": counters.to_dict(),
        }
        own, elsewhere = split_by_owner(path, pages) if earlier else (pages, {})
        return NewPages(pages=own, state=state, mutations=mutations, elsewhere=elsewhere)

    async def _summaries(
        self,
        store: PageStore,
        path: Path,
        jobs: list[SegmentJob],
        fresh: list[Page],
        counters: Counters,
        counter: TokenCounter,
    ) -> list[Page]:
        made: list[Page] = []
        queue = list(jobs)
        while queue:
            job = queue.pop(0)
            wanted = job.page_ids()
            have = {p.page_id: p for p in (*fresh, *made) if p.page_id in wanted}
            missing = [page_id for page_id in wanted if page_id not in have]
            if missing:
                have.update(await store.get_pages(path, missing))
            page = build_summary(job, list(have.values()), counter=counter, clock=self._clock)
            made.append(page)
            queue.extend(record_summary(counters, page))
        return made

