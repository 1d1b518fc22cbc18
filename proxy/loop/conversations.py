"""Find where a request's messages sit in the stored conversation tree, and store the new ones.

Two ways in (DESIGN.md section 2):
- full resend (no `X-VM-Session`, or one whose stored conversation the request starts
  with): the chain hashes of the request's messages are looked up; the longest known prefix
  is what the store has, the rest is new. Chain hashes commit to their whole prefix, so
  "h_k is known" implies "h_0..h_k are known", and the longest known prefix is found with a
  few lookups (the newest hashes first, then a binary search).
- append (`X-VM-Session` naming a stored conversation, the request holding only the new
  messages): the new messages are chained onto the conversation's last message.

New messages land on the conversation that owns the last known message when they extend
its tip, or on a fork of it when they diverge (an edit or a regenerate). Fork ids are
derived from what they fork and their first message, so two identical requests racing
each other converge on one fork instead of making two. A request with nothing new that
ends inside a longer conversation (a regenerate, or another client of the tenant with the
same opening) gets an empty fork of its own, so that what X-VM-Session names ends where
the request does.

Round trips. A conversation row read before its lock is used as it is when it shows the
conversation ending where the new messages go: the append names its version, so a row
that went stale meanwhile costs a VersionConflict and a fresh read, never a lost or
doubled page. Every other decision (forking, finding messages stored meanwhile) is taken
on a row read under the lock. Such rows: the one a placement ends on (when its answer is
stored), the one read with a request's first lookup, and the last one this process saw
(prefix_cache), which spares a resent history any read before its append when it ends
with the remembered prefix. A whole-history request's new conversation or fork is created
deferred, with its turn (PageStore.create_conversation's `durable`): its path is made, not
read (stored_rows.branch_path), so the request waits for no other client's write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from proxy.loop.derive import store_elsewhere
from proxy.loop.held import HeldWrite, LeanTokens, held_write, root_path
from proxy.loop.offload import fingerprinted, hashed
from proxy.loop.placement import AppendHook, Ingest, Placement, StateAt, cut_path
from proxy.loop.prefix_cache import PrefixCache
from proxy.loop.stored_rows import (
    Known,
    answered_before_retry,
    branch_path,
    fork_conversation,
    longest_known_prefix,
    new_after,
    own_branch,
    own_fork,
    paths,
    remembered_start,
    require,
    root_id,
    starts_with_stored,
)
from proxy.store.base import Conversation, PageStore, Path, UnknownConversation, VersionConflict
from proxy.vm.mutations import Mutation

_MAX_RETRIES = 8


class Conversations:
    def __init__(
        self,
        store: PageStore,
        ingest: Ingest,
        state_at: StateAt,
        prefix_cache: PrefixCache | None = None,
        *,
        durable: bool = True,
        hold_up_to: int | None = None,
        lean_tokens: LeanTokens | None = None,
    ) -> None:
        """`durable=False`: the request holds the whole history, so its messages may be
        stored after it is answered (PageStore.append's `durable`), and, when they come
        to at most `hold_up_to` tokens, in one append with the answer (proxy.loop.held)."""
        self._durable = durable
        self._hold_up_to = None if durable else hold_up_to
        self._lean_tokens = lean_tokens
        self._held: HeldWrite | None = None
        self._store = store
        self._ingest = ingest
        self._state_at = state_at
        self._prefixes = PrefixCache() if prefix_cache is None else prefix_cache

    async def place(
        self,
        tenant: str,
        messages: Sequence[dict[str, Any]],
        session: str | None,
        on_append: AppendHook | None = None,
        *,
        after: tuple[str, int] | None = None,
        fingerprints: list[int] | None = None,
        retried: Callable[[float], bool] | None = None,
    ) -> Placement:
        """Align the request with the store, store what is new, bind the session name.
        `after` (conv_id, length): the messages follow that conversation's history cut at
        `length` (a Responses API `previous_response_id`), forking it if it went on.
        `fingerprints`: the messages' (prefix_cache.fingerprint_all), when already made.
        `retried`: see `_append`."""
        stored: Conversation | None = None
        bound: str | None = None
        if session is not None:
            # A name the client chose, or the conversation id the proxy sent back in an
            # earlier X-VM-Session header.
            bound = await self._store.resolve_session(tenant, session)
            stored = await self._store.get_conversation(tenant, bound or session)
        if after is not None:
            conv = await require(self._store, tenant, after[0])
            path = await self._store.path(tenant, conv.conv_id)
            placement = await self._append_at(tenant, conv, path, after[1], messages, on_append)
            await self._bind(tenant, session, placement.leaf.conv_id, bound)
            return placement
        if stored is not None and stored.length > 0:
            if not await starts_with_stored(self._store, tenant, stored, messages):
                placement = await self._append(tenant, stored, messages, on_append, retried)
                await self._bind(tenant, session, placement.leaf.conv_id, bound)
                return placement
        placement = await own_branch(
            self._store, tenant,
            await self._resend(tenant, messages, on_append, fingerprints=fingerprints),
            durable=self._durable,
        )
        await self._bind(tenant, session, placement.leaf.conv_id, bound)
        return placement

    async def extend(
        self,
        tenant: str,
        placement: Placement,
        messages: Sequence[dict[str, Any]],
        *,
        state_patch: Mapping[str, Any] | None = None,
        mutations: Sequence[Mutation] = (),
        response_id: str | None = None,
    ) -> Placement:
        """Store messages that follow a placed request (the proxy's own answer), with
        `state_patch` merged into the conversation state and `response_id` recorded where
        they end (PageStore.append's), in the same write. When all of them were stored
        already (`new_count` 0), no write is made: the caller records the id itself."""
        hashes = await hashed(tenant, messages, prev=placement.last_hash or None)
        anchor = placement.offset + placement.length - 1
        held, self._held = self._held, None
        if held is not None and (held.target.conv_id, held.end) != (
            placement.leaf.conv_id, anchor + 1
        ):
            await self._store_held(tenant, held)
            held = None
        known = None
        if placement.leaf_path is not None:
            known = Known(placement.leaf, placement.leaf_path)
        if held is not None:
            leaf, new_count, path = await self._store_held(
                tenant, held, messages, hashes, state_patch=state_patch, mutations=mutations,
                response_id=response_id,
            )
        else:
            leaf, new_count, path = await self._store_after(
                tenant,
                placement.leaf.conv_id,
                anchor,
                messages,
                hashes,
                state_patch=state_patch,
                mutations=mutations,
                known=known,
                response_id=response_id,
            )
        length = placement.length + len(messages)
        cut, full = await paths(self._store, tenant, leaf.conv_id, placement.offset + length, path)
        fingerprints = placement.fingerprints
        if fingerprints:
            fingerprints = [*fingerprints, *await fingerprinted(messages)]
            self._prefixes.remember(tenant, fingerprints, hashes[-1], leaf, full)
        return Placement(
            leaf=leaf,
            path=cut,
            offset=placement.offset,
            length=length,
            last_hash=hashes[-1] if hashes else placement.last_hash,
            new_count=new_count,
            appended=placement.appended,
            fingerprints=fingerprints,
            leaf_path=full,
        )

    @property
    def held(self) -> HeldWrite | None:
        """The request's messages held for its answer (see `flush`), if any."""
        return self._held

    def hold_instead(self, held: HeldWrite) -> None:
        """Hold `held` instead (the same messages moved onto a fork: proxy.loop.handler)."""
        self._held = held

    async def flush(self, tenant: str) -> None:
        """Store the request's held messages now, alone (its answer will not be stored)."""
        held, self._held = self._held, None
        if held is not None:
            leaf, _, path = await self._store_held(tenant, held)
            if path is not None and path.leaf == leaf.conv_id:
                # The conversation went on: the row the prefix cache keeps of it is this
                # one now, so that a request resending its older history is not placed
                # (nor named) on the row before.
                self._prefixes.saw(leaf, path)

    async def _store_held(
        self,
        tenant: str,
        held: HeldWrite,
        messages: Sequence[dict[str, Any]] = (),
        hashes: Sequence[str] = (),
        *,
        state_patch: Mapping[str, Any] | None = None,
        mutations: Sequence[Mutation] = (),
        response_id: str | None = None,
    ) -> tuple[Conversation, int, Path | None]:
        """Store the held messages and `messages` after them, in one append; should the row
        have changed meanwhile, or pages of other conversations be derived, as if placed now."""
        conv_id = held.target.conv_id
        everything, all_hashes = [*held.messages, *messages], [*held.hashes, *hashes]
        async with self._store.lock(tenant, conv_id):
            made = await self._ingest(
                self._store, tenant, held.path, held.anchor + 1, everything, all_hashes,
                dict(held.before),
            )
            if not made.elsewhere:
                try:
                    leaf = await self._store.append(
                        tenant,
                        conv_id,
                        made.pages,
                        expected_version=held.target.version,
                        new_length=held.end + len(messages),
                        state={**made.state, **(state_patch or {})},
                        mutations=[*made.mutations, *mutations],
                        durable=self._durable,
                        response_id=response_id,
                    )
                    return leaf, len(messages), held.path
                except VersionConflict:
                    pass
        leaf, count, path = await self._store_after(
            tenant, conv_id, held.anchor, everything, all_hashes, state_patch=state_patch,
            mutations=mutations, response_id=response_id,
        )
        return leaf, min(count, len(messages)), path

    async def _resend(
        self,
        tenant: str,
        messages: Sequence[dict[str, Any]],
        on_append: AppendHook | None = None,
        *,
        remembered_rows: bool = True,
        fingerprints: list[int] | None = None,
    ) -> Placement:
        if fingerprints is None:
            fingerprints = await fingerprinted(messages)
        start, owner, prev, hint = await remembered_start(
            self._store, self._prefixes, tenant, fingerprints, rows=remembered_rows
        )
        hashes = await hashed(tenant, messages[start:], prev=prev)
        if start:
            # The remembered prefix is stored; whether the few messages after it are too is
            # checked under the conversation lock in _store_after.
            known = start
        else:
            known, owner = await longest_known_prefix(self._store, tenant, hashes)
        if known == 0:
            conv_id = root_id(hashes)
            created = await self._store.create_conversation(
                tenant, conv_id, durable=self._durable
            )
            owner = conv_id
            if hint is None and created.parent_id is None:
                # Its row and path are known: no need to read them back.
                hint = Known(created, root_path(tenant, conv_id))
        assert owner is not None
        new = known - start
        try:
            leaf, new_count, path = await self._store_after(
                tenant, owner, known - 1, messages[known:], hashes[new:], known=hint,
                on_append=on_append, may_hold=True,
            )
        except UnknownConversation:
            if hint is None or not remembered_rows:
                raise
            # The remembered conversation is gone (deleted by gc since): start over.
            return await self._resend(
                tenant, messages, on_append, remembered_rows=False, fingerprints=fingerprints
            )
        last_hash = hashes[-1] if hashes else str(prev or "")
        cut, full = await paths(self._store, tenant, leaf.conv_id, len(messages), path)
        if self._held is None:
            self._prefixes.remember(tenant, fingerprints, last_hash, leaf, full)
        return Placement(
            leaf=leaf,
            path=cut,
            offset=0,
            length=len(messages),
            last_hash=last_hash,
            new_count=new_count,
            appended=False,
            fingerprints=fingerprints,
            leaf_path=full,
        )

    async def _append(
        self,
        tenant: str,
        stored: Conversation,
        messages: Sequence[dict[str, Any]],
        on_append: AppendHook | None = None,
        retried: Callable[[float], bool] | None = None,
    ) -> Placement:
        """`messages` after `stored`'s tip; `retried`, for an SDK's retry, says whether an
        answer stored at a time was delivered (stored_rows.answered_before_retry)."""
        if retried is not None:
            placed = await answered_before_retry(self._store, tenant, stored, messages, retried)
            if placed is not None:
                return placed
        path = await self._store.path(tenant, stored.conv_id)
        return await self._append_at(tenant, stored, path, stored.length, messages, on_append)

    async def _append_at(
        self,
        tenant: str,
        stored: Conversation,
        path: Path,
        end: int,
        messages: Sequence[dict[str, Any]],
        on_append: AppendHook | None,
    ) -> Placement:
        """Store `messages` after position `end - 1` of `stored`'s path (its tip, or an
        earlier point, which forks)."""
        at_tip = stored.length == end
        new, anchor, offset, prev = await new_after(
            self._store, self._state_at, tenant, stored, path, end, messages
        )
        hashes = await hashed(tenant, new, prev=prev or None)
        leaf, new_count, leaf_path = await self._store_after(
            tenant, stored.conv_id, anchor, new, hashes, known=Known(stored, path),
            on_append=on_append,
        )
        if not new and not at_tip:
            # Nothing new after an earlier point: the request ends there, on a branch of
            # its own (as a regenerate does), so what follows is stored after it.
            leaf = await own_fork(self._store, tenant, stored, anchor)
            leaf_path = None
        end = anchor + 1 + len(new)
        cut, full = await paths(self._store, tenant, leaf.conv_id, end, leaf_path or path)
        return Placement(
            leaf=leaf,
            path=cut,
            offset=offset,
            length=end - offset,
            last_hash=hashes[-1] if hashes else prev,
            new_count=new_count,
            appended=True,
            leaf_path=full,
        )

    async def _store_after(
        self,
        tenant: str,
        owner: str,
        anchor: int,
        messages: Sequence[dict[str, Any]],
        hashes: Sequence[str],
        *,
        state_patch: Mapping[str, Any] | None = None,
        mutations: Sequence[Mutation] = (),
        known: Known | None = None,
        on_append: AppendHook | None = None,
        may_hold: bool = False,
        response_id: str | None = None,
    ) -> tuple[Conversation, int, Path | None]:
        """Store `messages` right after position `anchor` of `owner`'s path (`may_hold`:
        or hold them for the answer, proxy.loop.held).

        Returns the conversation they now end on, how many were new, and that
        conversation's path when it was read on the way. Runs under the
        conversation lock, rechecking what is known there, because another request of the
        same conversation may have stored some of them meanwhile. `known`, a row read
        before the lock, spares reading it again when it shows `owner` ending at `anchor`
        (see the module docstring); it serves the first attempt only.
        """
        for _ in range(_MAX_RETRIES):
            async with self._store.lock(tenant, owner):
                known_path = None
                if (
                    known is not None
                    and messages
                    and known.conv.conv_id == owner
                    and known.conv.length == anchor + 1
                ):
                    conv, known_path = known.conv, known.path
                else:
                    conv = await require(self._store, tenant, owner)
                known = None
                # Only when the conversation has grown past `anchor` may another request have
                # stored some of these messages already (on it, or on a fork of it).
                if messages and conv.length != anchor + 1:
                    found = await self._store.lookup_hashes(tenant, list(hashes))
                    done = 0
                    while done < len(hashes) and hashes[done] in found:
                        done += 1
                    if done:
                        owner, anchor = found[hashes[done - 1]]
                        messages, hashes = messages[done:], hashes[done:]
                        if messages:
                            continue
                        conv = await require(self._store, tenant, owner)
                if not messages:
                    return conv, 0, None
                target = conv
                if anchor >= conv.length:
                    # The conversation does not reach the anchor: what placed the request
                    # there was a write that was lost (a deferred one); place it again.
                    raise UnknownConversation(f"{owner} ends before position {anchor}")
                if conv.length != anchor + 1:
                    target = await fork_conversation(
                        self._store, tenant, conv, anchor, hashes[0], durable=self._durable
                    )
                if known_path is not None and known_path.leaf == target.conv_id:
                    path = known_path
                else:
                    path = await branch_path(self._store, tenant, target)
                before = await self._state_at(self._store, tenant, path, anchor, target)
                end = anchor + 1 + len(messages)
                held = None if not may_hold or state_patch or mutations else await held_write(
                    self._lean_tokens, self._hold_up_to, target, path, anchor, messages,
                    hashes, before)  # fmt: skip
                if held is not None:
                    self._held = held
                    if on_append is not None:
                        on_append(cut_path(path, end), held.state)
                    return held.row(), len(messages), path
                made = await self._ingest(
                    self._store, tenant, path, anchor + 1, messages, hashes, before
                )
                if made.elsewhere:
                    # The conversation forked (`owner`, whose lock this holds) may be one.
                    await store_elsewhere(self._store, tenant, made.elsewhere, held=owner)
                state = {**made.state, **(state_patch or {})}
                if on_append is not None:
                    on_append(cut_path(path, end), state)
                try:
                    leaf = await self._store.append(
                        tenant,
                        target.conv_id,
                        made.pages,
                        expected_version=target.version,
                        new_length=end,
                        state=state,
                        mutations=[*made.mutations, *mutations],
                        durable=self._durable,
                        response_id=response_id,
                    )
                except VersionConflict:
                    continue
                return leaf, len(messages), path
        raise VersionConflict(f"conversation {owner} kept changing while storing a turn")

    async def _bind(
        self, tenant: str, session: str | None, conv_id: str, bound: str | None
    ) -> None:
        """Point the session name at `conv_id` (a write, skipped when it already does)."""
        if session is not None and bound != conv_id:
            await self._store.bind_session(tenant, session, conv_id)
