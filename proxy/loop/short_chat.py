"""The common request, kept cheap: the next turn of a short chat (issue 15).

Most requests are the next turn of a chat this process answered the turn before: the whole
history resent (no `X-VM-Session`), all of it stored but the new question, and far below
`vm.activate_above`. Placing such a request in the general way (proxy.loop.conversations,
proxy.loop.prepare) costs more than relaying it: a dozen awaits, locks, placements and
paths, each cheap, for a decision the prefix cache has already made. Here it is taken
directly:

- the prefix cache (proxy.loop.prefix_cache) knows the history but its last message or
  few, and the last row this process saw of the conversation still ends there: the
  request's new messages go right after it, at its tip;
- they, with what the history already costs, keep the request at most the threshold:
  it is relayed unchanged;
- its answer and its new messages are then stored together in one deferred append (as
  proxy.loop.held does), made by the same ingest as the general path's, on the row seen,
  whose version the append names.

The row is a hint (see proxy.loop.prefix_cache): when the append finds the conversation
changed (another request of it stored a turn meanwhile), or the conversation gone, the
messages are stored the general way instead, which rereads and forks as it must. Two
requests of this process do not race for one row: a turn placed on a tip another turn in
flight holds goes on a fork of its own (proxy.loop.tip_claims), and a turn whose turn
before is still being stored waits for it (proxy.loop.appends_under_way).

A request whose whole history the prefix cache knows is the same request again (a
regenerate, an SDK's retry, another client's identical call): `SameTurn` relays it and
places its answer before the response goes out. Sent again byte for byte, it takes what
was decided of it before (`same_again`, proxy.loop.repeats). Anything else this module
does not take (a fork, a tool exchange, a long text, a session name, a stream sent again)
never gets here: `short_turn` answers None and the caller places the request in the
general way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from proxy.loop.conversations import Conversations
from proxy.loop.held import root_path
from proxy.loop.placement import Placement
from proxy.loop.prefix_cache import fingerprint
from proxy.loop.prepare import forwarded_headers, threshold
from proxy.loop.repeats import PlacedAnswer, Repeat
from proxy.loop.services import AppServices
from proxy.loop.stored_rows import root_id
from proxy.loop.storing import OFF_LOOP_CHARS, Ingester, start_state
from proxy.loop.tip_claims import Claim, Tip
from proxy.loop.turn import assistant_name
from proxy.serving import SERVING
from proxy.store.base import Conversation, Path, UnknownConversation, VersionConflict
from proxy.vm.identity import chain_hashes

# A question longer than this is left to the general path: its tokens are counted, and
# its pages made, in a worker thread there (proxy.loop.held, proxy.loop.storing).
_MAX_NEW_CHARS = OFF_LOOP_CHARS
# A new chat's history is looked up in the store in one read (the general path probes
# the newest few, then searches): at most this many messages.
_MAX_NEW_MESSAGES = 16


@dataclass(slots=True)
class ShortTurn:
    """A request placed at the tip of a conversation it continues, its new messages not
    stored yet: they are stored with its answer, or alone when none comes (`store`)."""

    state: AppServices
    request: Request
    tenant: str
    messages: Sequence[dict[str, Any]]
    fingerprints: list[int]
    row: Conversation  # the conversation's row, ending where the new messages go
    path: Path  # its whole path
    before: dict[str, Any]  # the conversation state there
    new: list[dict[str, Any]]  # the request's messages after the stored ones
    hashes: list[str]  # their chain hashes
    ingester: Ingester
    tokens: int  # what the request's history costs (X-VM-Prompt-Tokens)
    answer_name: str
    claimed: Tip | None = None  # the tip it holds until its append is made (tip_claims)
    stored: bool = False

    def headers(self) -> dict[str, str]:
        return forwarded_headers(self.row.conv_id, self.tokens)

    async def store(self, answer: dict[str, Any] | None) -> None:
        """Store the new messages, then `answer` (None: none came), in one append. The
        chat's next turn waits for it (proxy.loop.appends_under_way)."""
        if self.stored:
            return
        self.stored = True
        appends, conv_id = self.state.appends, self.row.conv_id
        appends.begin(self.tenant, conv_id)
        try:
            await self._store(answer)
        finally:
            appends.end(self.tenant, conv_id)
            if self.claimed is not None:
                self.state.tips.release(self.claimed)

    async def _store(self, answer: dict[str, Any] | None) -> None:
        if answer is not None and not _plain([answer]):
            # A long answer (or one of tool calls): hashed, fingerprinted and made into a
            # page in slices and worker threads by the general way, not here on the loop
            # (issue 13: a 50 MB answer held every other request for ~100 ms).
            await self._store_anew([*self.messages, answer])
            return
        messages = list(self.new)
        hashes = list(self.hashes)
        if answer is not None:
            messages.append(answer)
            hashes.extend(chain_hashes(self.tenant, [answer], prev=hashes[-1]))
        store = self.state.store
        row = self.row
        first = row.length
        made = await self.ingester.ingest(
            store, self.tenant, self.path, first, messages, hashes, dict(self.before)
        )
        if not made.elsewhere:
            try:
                leaf = await store.append(
                    self.tenant, row.conv_id, made.pages, expected_version=row.version,
                    new_length=first + len(messages), state=made.state,
                    mutations=made.mutations, durable=False,
                )
            except (VersionConflict, UnknownConversation):
                pass  # changed or gone since the row was seen: placed anew below
            else:
                cache = self.state.prefix_cache
                fingerprints = self.fingerprints
                if answer is not None:
                    if first == 0:
                        # A new chat's request, remembered too: the same request again
                        # (SameTurn) then finds its history, and its answer if the same.
                        cache.remember(self.tenant, fingerprints, self.hashes[-1], leaf,
                                       self.path)
                    fingerprints = [*fingerprints, fingerprint(answer)]
                cache.remember(self.tenant, fingerprints, hashes[-1], leaf, self.path)
                return
        await self._store_anew([*self.messages, *messages[len(self.new):]])

    async def _store_anew(self, history: list[dict[str, Any]]) -> None:
        await place_anew(self.state, self.ingester, self.tenant, history)


@dataclass(slots=True)
class SameTurn:
    """A short chat's request whose whole history is stored already: the same request
    again (a regenerate, a retry, another client's identical call), relayed unchanged.

    Its answer is placed before the response goes out, so that the response names the
    conversation it is on. An answer some conversation already ends with, after exactly
    this history, is on that one, and nothing is stored (the general path gives every
    regenerate a branch of its own, which stored the same answer again each time). Any
    other answer is placed the general way: on a fork of its own. What is decided of the
    request, and where its last answer went, is kept by its bytes (proxy.loop.repeats)."""

    state: AppServices
    request: Request
    body: Mapping[str, Any]
    tenant: str
    repeat: Repeat
    conv_id: str  # what the response names: a conversation holding the history, at first
    ingester: Ingester | None = None  # made when the answer is placed the general way
    # When it began (was made): a version read asked since then serves it (repeats).
    started: float = field(default_factory=time.perf_counter)

    @property
    def answer_name(self) -> str:
        return self.repeat.answer_name

    def headers(self) -> dict[str, str]:
        return forwarded_headers(self.conv_id, self.repeat.tokens)

    async def place(self, answer: dict[str, Any]) -> str:
        """The conversation `answer` is on, once stored (see the class docstring)."""
        placed = self._placed_before(answer)
        if placed is None or not await self._still_so(placed):
            placed = self._ending_with(answer)
            if placed is not None and not await self._still_so(placed):
                placed = None
        if placed is not None:
            stored = placed.conv_id
        else:
            ingester = self.ingester
            if ingester is None:
                ingester = threshold(self.state, self.request, self.body, self.tenant, ())[3]
            placement = await place_anew(
                self.state, ingester, self.tenant, [*self.body["messages"], answer]
            )
            stored = placement.leaf.conv_id
        self.conv_id = stored
        return stored

    def _placed_before(self, answer: dict[str, Any]) -> PlacedAnswer | None:
        """This request's last answer placed, when `answer` is the same and the prefix
        cache holds the very row it was found by (another row seen since: `_ending_with`
        looks again)."""
        placed = self.repeat.placed
        if placed is None or placed.answer != answer:
            return None
        seen = self.state.prefix_cache.row(self.tenant, placed.conv_id)
        return placed if seen is not None and seen[0] is placed.row else None

    def _ending_with(self, answer: dict[str, Any]) -> PlacedAnswer | None:
        """`answer` on the row the prefix cache last saw of a conversation that ends with
        it after this history, if it knows one; else None."""
        if not _plain([answer]):
            return None
        cache = self.state.prefix_cache
        extended = [*self.repeat.fingerprints, fingerprint(answer)]
        found = cache.longest(self.tenant, extended)
        if found is None or found.count != len(extended):
            return None
        seen = cache.row_ending(self.tenant, found)
        # The row seen ends there, with this answer after this history (the chain hash
        # commits to both).
        if seen is None or chain_hashes(
            self.tenant, [answer], prev=self.repeat.remembered.chain_hash
        ) != [found.chain_hash]:
            return None
        return PlacedAnswer(answer, seen[0])

    async def _still_so(self, placed: PlacedAnswer) -> bool:
        """Whether the store's version of `placed`'s conversation is still its row's: the
        conversation has not moved on since (the row is a hint: not every path that stores
        tells the cache). A read asked since this request began serves it (repeats)."""
        repeat, store = self.repeat, self.state.store
        if repeat.found_since(placed, self.started):
            return True
        shared = repeat.reading_since(placed, self.started)
        if shared is None:
            asked = time.perf_counter()
            read = store.conversation_version(self.tenant, placed.conv_id)
            if SERVING.requests <= 1 or not store.reads_wait:
                # Served alone, or a read that does not wait (SQLite reads on the event
                # loop): no task made for it (a task would run a loop iteration later).
                return repeat.version_read(placed, asked, await read)
            shared = asked, repeat.share(placed, asked, asyncio.ensure_future(read))
        asked, reading = shared
        # Shielded: a request that goes away does not cancel the read the others await.
        return repeat.version_read(placed, asked, await asyncio.shield(reading))


def same_again(
    state: AppServices, request: Request, body: Mapping[str, Any], raw: bytes, tenant: str
) -> SameTurn | None:
    """The request as a SameTurn decided before (by its bytes: proxy.loop.repeats), while
    the prefix cache still holds what it was decided by; else None."""
    repeat = state.repeats.get(tenant, raw)
    if repeat is None or not state.prefix_cache.holds(
        tenant, repeat.fingerprints, repeat.remembered
    ):
        return None
    return SameTurn(state, request, body, tenant, repeat, repeat.remembered.conv_id)


async def place_anew(
    state: AppServices, ingester: Ingester, tenant: str, history: list[dict[str, Any]]
) -> Placement:
    """The general way: the whole history placed and its new messages stored."""
    conversations = Conversations(
        state.store, ingester.ingest, ingester.state_at, state.prefix_cache,
        durable=False,
    )
    placement = await conversations.place(tenant, history, None)
    await conversations.flush(tenant)
    return placement


async def short_turn(
    state: AppServices,
    request: Request,
    body: Mapping[str, Any],
    tenant: str,
    fingerprints: list[int] | None,
    raw: bytes | None = None,
) -> ShortTurn | SameTurn | None:
    """The request as the next turn of a short chat, or the first of a new one (see the
    module docstring), or the same request again (SameTurn), or None when it is none of
    these: the caller then places it in the general way. `fingerprints`: of its messages
    (prefix_cache.short_fingerprints). `raw`: its body's bytes, by which a SameTurn is
    remembered (proxy.loop.repeats)."""
    decided = await _decide(state, request, body, tenant, fingerprints, raw)
    if isinstance(decided, _UnderWay):
        # The chat's turn before is being stored: this one goes after it, not on the row
        # before it (proxy.loop.appends_under_way).
        await state.appends.settled(tenant, decided.conv_id)
        decided = await _decide(state, request, body, tenant, fingerprints, raw)
    return None if isinstance(decided, _UnderWay) else decided


@dataclass(frozen=True, slots=True)
class _UnderWay:
    conv_id: str  # the conversation the request continues, an append to it under way


async def _decide(
    state: AppServices,
    request: Request,
    body: Mapping[str, Any],
    tenant: str,
    fingerprints: list[int] | None,
    raw: bytes | None,
) -> ShortTurn | SameTurn | _UnderWay | None:
    messages = body["messages"]
    if fingerprints is None or body.get("tools") or body.get("functions"):
        return None  # a long text; tools, whose cost is counted in the general way
    counter, overhead, activate_above, ingester = threshold(state, request, body, tenant, ())
    if len(messages) * counter.format.per_message > activate_above:
        return None  # past the threshold on what its messages cost at the least
    cache = state.prefix_cache
    remembered = cache.longest(tenant, fingerprints)
    if remembered is not None and state.appends.under_way(tenant, remembered.conv_id):
        return _UnderWay(remembered.conv_id)
    stored = 0 if remembered is None else remembered.count
    if stored >= len(messages):
        # Nothing new: the same request again (a regenerate, a retry, another client's
        # identical call). Its answer decides where it goes (SameTurn).
        # A stream's headers go out before its answer is known: it is placed the general
        # way, on a branch of its own, before it is relayed.
        if remembered is None or body.get("stream") is True or len(messages) > _MAX_NEW_MESSAGES:
            return None
        tokens = ingester.lean_tokens(messages, {})
        if tokens is None or tokens + overhead > activate_above:
            return None
        repeat = Repeat(fingerprints, remembered, tokens + overhead, assistant_name(messages))
        if raw is not None:
            state.repeats.keep(tenant, raw, repeat)
        return SameTurn(state, request, body, tenant, repeat, remembered.conv_id, ingester)
    new = list(messages[stored:])
    if not _plain(new):
        return None
    if remembered is None:
        if len(messages) > _MAX_NEW_MESSAGES:
            return None
        row, path = None, None
        before = start_state()
    else:
        seen = cache.row_ending(tenant, remembered)
        if seen is None:
            return None
        row, path = seen
        before = dict(row.state)
    tokens = ingester.lean_tokens(new, before)
    if tokens is None or tokens + overhead > activate_above:
        return None
    hashes = chain_hashes(tenant, new, prev=None if remembered is None else remembered.chain_hash)
    if row is None or path is None:
        if state.appends.under_way(tenant, root_id(hashes)):
            return _UnderWay(root_id(hashes))  # its first turn, not remembered yet
        created = await _new_conversation(state, tenant, hashes)
        if created is None:
            return None
        row, path = created
    tip: Tip = (tenant, row.conv_id, row.length)
    claim = state.tips.claim(tip, len(messages))
    if claim is Claim.RIVAL:
        # Another request goes on this tip (the same prompt sampled in parallel, a retry):
        # this one is placed the general way, on a fork of its own, which its response
        # names (proxy.loop.handler, tip_claims).
        return None
    return ShortTurn(
        state, request, tenant, messages, fingerprints, row, path, before, new, hashes,
        ingester, tokens + overhead, assistant_name(messages),
        claimed=tip if claim is Claim.HELD else None,
    )


def _plain(new: Sequence[Mapping[str, Any]]) -> bool:
    """Messages of text, none of a tool exchange, short enough to handle on the loop."""
    chars = 0
    for message in new:
        content = message.get("content")
        if type(content) is not str or message.get("role") == "tool" or "tool_calls" in message:
            return False
        chars += len(content)
    return chars <= _MAX_NEW_CHARS


async def _new_conversation(
    state: AppServices, tenant: str, hashes: Sequence[str]
) -> tuple[Conversation, Path] | None:
    """The conversation a history none of whose messages is stored starts (created
    deferred, as the general path creates it), or None when some are stored: the history
    continues a conversation this process does not remember (another replica's, or one
    from before a restart), for the general path to find."""
    conv_id = root_id(hashes)
    row = await state.store.open_root(tenant, conv_id, hashes)
    if row is None or row.parent_id is not None or row.length != 0:
        return None
    return row, root_path(tenant, conv_id)
