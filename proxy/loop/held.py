"""A short chat's new messages, held until its answer is stored with them (issue 15).

A request that carries its whole history and is forwarded unchanged (below
`vm.activate_above`) may be answered before its messages are written: were they lost, its
client's next request resends them (PageStore.append's `durable`). Its question and its
answer are then stored in one append, once the answer is in, instead of one append each:
half the appends, conversation rows written and commits of the common request, and one
ingest: when the request is placed only the question's tokens are counted (they decide
whether the request needs memory, and are reported in X-VM-Prompt-Tokens), as its lean
page would count them; its page is made with the answer's.

Until then the question is in no store, so the row the request was placed on is not shown
to anyone else: not kept in the prefix cache, and written, when the answer never comes (an
upstream error, a cut stream, the client gone), by `Conversations.flush`, after the
response.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.loop.offload import text_chars
from proxy.loop.storing import OFF_LOOP_CHARS
from proxy.store.base import Conversation, Path
from proxy.store.paths import build_path

# (new messages, the conversation state before them) -> what the history costs resent
# after them, as their lean pages would count it; None when that takes making the pages
# (proxy.loop.storing.Ingester.lean_tokens).
LeanTokens = Callable[[Sequence[Mapping[str, Any]], Mapping[str, Any]], int | None]


@dataclass(frozen=True, slots=True)
class HeldWrite:
    """An append not issued yet: `messages` after position `anchor` of `target`."""

    target: Conversation  # the row the append replaces
    path: Path  # the target's whole path
    anchor: int
    messages: list[dict[str, Any]]
    hashes: list[str]
    before: dict[str, Any]  # the conversation state before the messages
    state: dict[str, Any]  # and after them, as far as the request needs it (hash, tokens)

    @property
    def end(self) -> int:
        return self.anchor + 1 + len(self.messages)

    def row(self) -> Conversation:
        """The row the append will write, as the store would return it."""
        return dataclasses.replace(
            self.target, length=self.end, version=self.target.version + 1,
            state=dict(self.state),
        )


async def held_write(
    lean_tokens: LeanTokens | None,
    up_to: int | None,
    target: Conversation,
    path: Path,
    anchor: int,
    messages: Sequence[dict[str, Any]],
    hashes: Sequence[str],
    before: Mapping[str, Any],
) -> HeldWrite | None:
    """`messages` held for the answer, when they keep the request at most `up_to` tokens
    (below the threshold: stored lean, and forwarded unchanged); else None."""
    if lean_tokens is None or up_to is None or not messages:
        return None
    if sum(map(text_chars, messages)) > OFF_LOOP_CHARS:
        # Counting a huge message's tokens (bounded, proxy.tokens) still takes tens of
        # milliseconds for a run of one character; tiktoken lets go of the GIL meanwhile.
        tokens = await asyncio.to_thread(lean_tokens, messages, before)
    else:
        tokens = lean_tokens(messages, before)
    if tokens is None or tokens > up_to:
        return None
    state = {**before, "hash": hashes[-1], "tokens": tokens}
    return HeldWrite(target, path, anchor, list(messages), list(hashes), dict(before), state)


def root_path(tenant: str, conv_id: str) -> Path:
    """The path of a conversation that forks nothing (one just created): no read needed."""
    return build_path(tenant, conv_id, {conv_id: (None, 0)}.get)
