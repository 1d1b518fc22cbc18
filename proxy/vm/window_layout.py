"""The window of one turn and its block (proxy.vm.packer): the stored frame's window
reused while it still applies, or the window restarted at the pinned turns, fitted to the
room (proxy.vm.pinning), with the turn's block (proxy.vm.turn_block) in what it leaves.
Pinned messages that had to leave are the block's to show or name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from proxy.vm import manifest
from proxy.vm.frame import Frame
from proxy.vm.pages import Page
from proxy.vm.pinning import PinnedPlan, fit_pinned, message_tokens, plan_pinned
from proxy.vm.turn_block import Block, BlockInputs, build_block
from proxy.vm.working_set import ScoredPage

# When the pinned turns do not fit whole, at least this share of their room is left to the
# block, which shows or at least names what the window left out (an agent's earlier
# steps of the current turn among them); without it the window took all the room, and
# what it dropped was nowhere in the prompt.
UNPINNED_BLOCK_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class Shared:
    """What both paths (reuse the frame, compact) need."""

    body: Mapping[str, Any]
    prefix: str
    role: str
    tools: list[Mapping[str, Any]]
    names: dict[str, str]
    reply: int
    reply_field: str | None
    fixed: int
    costs: dict[str, int]  # what `fixed` is made of: rules (with the system prompt), tools, framing
    room: int  # tokens for the leading manifest, the window and the block
    window_max: int  # the most the verbatim window may take before it restarts
    recall_share: float  # the share of what the window leaves that the block may take
    key: str
    mode: str
    policy: manifest.Policy
    inputs: BlockInputs
    pin_last_turns: int
    # vm.turn_note "leading": the turn's block closes the leading message instead of
    # following the latest user message (for chat templates that take no later system
    # message); it costs the prompt-cache prefix from the block on.
    block_in_lead: bool = False


@dataclass
class Layout:
    frame: Frame  # the leading manifest in use (saved for the next turn only when `keep`)
    messages: list[Mapping[str, Any]]
    pinned_ids: list[str]
    pinned: list[Page]  # the pages of `messages`, in order
    window_tokens: int
    block: Block
    keep: bool
    compacted: bool
    notes: list[str] = field(default_factory=list)
    over_budget: bool = False
    pinned_dropped: bool = False
    shortened: set[str] = field(default_factory=set)  # pinned pages sent reduced or clipped
    clipped: set[str] = field(default_factory=set)  # those of them cut


def reuse(shared: Shared, frame: Frame, window: Sequence[Page]) -> Layout | None:
    """This turn on the stored frame, if it still applies and the window is still within
    its share; else None (compact)."""
    if frame.key != shared.key or not window or window[0].anchor != frame.start:
        return None
    window_tokens = sum(message_tokens(p, shared.inputs.counter) for p in window)
    if window_tokens > shared.window_max:
        return None
    block = _block(shared.inputs, shared, frame.start, shared.room - frame.tokens - window_tokens)
    return Layout(
        frame=frame,
        # Not copied: upstream_messages copies what it sends.
        messages=[p.message or {} for p in window],
        pinned_ids=[p.page_id for p in window],
        pinned=list(window),
        window_tokens=window_tokens,
        block=block,
        keep=True,
        compacted=False,
    )


def compact(shared: Shared, window: Sequence[Page]) -> Layout:
    """Restart the window at the pinned turns."""
    counter = shared.inputs.counter
    units = plan_pinned(window, pin_last_turns=shared.pin_last_turns, counter=counter)
    pinned_start = units[0].pages[0].anchor if units else -1

    def lead(start: int) -> tuple[dict[str, Any], int]:
        data = manifest.build_lead(
            mode=shared.mode,
            pinned_from=f"msg_{start}" if start >= 0 else None,
            policy=shared.policy,
        )
        return data, manifest.manifest_tokens(data, counter)

    reserve = lead(pinned_start)[1]
    fits = shared.room - reserve
    pinned = fit_pinned(units, fits, counter)
    block_room = int(fits * UNPINNED_BLOCK_SHARE)
    if pinned.dropped and shared.recall_share > 0 and fits - pinned.tokens < block_room:
        smaller = fit_pinned(units, fits - block_room, counter)
        if not smaller.over_budget and smaller.shortened <= pinned.shortened:
            pinned = smaller  # only more left out, nothing kept cut shorter
    start = pinned.pages[0].anchor if pinned.pages else pinned_start
    data, tokens = lead(start)
    inputs = shared.inputs
    if pinned.dropped:
        # Pinned turns or exchanges that had to leave are candidates again, as relevant as
        # the best hit (an agent's earlier steps of this very turn may be among them): the
        # block shows them, or its manifest lists them, though the window starts before
        # them.
        extra = [ScoredPage(p, _unpinned_relevance(p), "unpinned") for p in pinned.dropped]
        inputs = replace(inputs, candidates=[*inputs.candidates, *extra],
                         unpinned=frozenset(p.page_id for p in pinned.dropped))
    block = _block(inputs, shared, start, shared.room - tokens - pinned.tokens)
    made = Frame(start=start, manifest=data, tokens=tokens, key=shared.key, turn=inputs.turn)
    pinned_ids = [p.page_id for p in pinned.pages]
    return Layout(
        frame=made,
        messages=[dict(m) for m in pinned.messages],
        pinned_ids=pinned_ids,
        pinned=pinned.pages,
        window_tokens=pinned.tokens,
        block=block,
        keep=_verbatim_to_end(pinned, window),
        compacted=True,
        notes=list(pinned.notes),
        over_budget=pinned.over_budget,
        pinned_dropped=bool(pinned.dropped),
        # (Of what is still pinned: a step reduced, then dropped, is in view no more.)
        shortened=pinned.shortened & set(pinned_ids),
        clipped=pinned.clipped & set(pinned_ids),
    )


def _unpinned_relevance(page: Page) -> float:
    """A step the window left out ranks with the best hits; a bare call below what it
    returned (the call shows as a line of its own; the result is the data)."""
    message = page.message or {}
    return 0.3 if message.get("tool_calls") and not message.get("content") else 1.0


def _block(inputs: BlockInputs, shared: Shared, start: int, room: int) -> Block:
    """The turn's block in `room` (less when `vm.recall_share` holds it back; none at 0)."""
    if shared.recall_share <= 0:
        return Block()
    return build_block(inputs, start=start, budget=int(room * shared.recall_share))


def _verbatim_to_end(pinned: PinnedPlan, window: Sequence[Page]) -> bool:
    """Can the next turn append to this window? Only if it is every message from its start
    to the end, none of them reduced."""
    if not pinned.pages or any(u.reduced for u in pinned.units):
        return False
    first = pinned.pages[0].anchor
    return [p.page_id for p in pinned.pages] == [p.page_id for p in window if p.anchor >= first]
