"""A short chat's new messages, held until its answer is stored with them (issue 15).

A request that carries its whole history and is forwarded unchanged (below
`vm.activate_above`) may be answered before its messages are written: were they lost, its
client's next request resends them (PageStore.append's `durable`). Its question and its
answer are then stored in one append, once the answer is in, instead of one append each:
half the appends, conversation rows written and commits of the common request. The
question is ingested when the request is placed (its tokens decide whether the request
needs memory, and are reported in X-VM-Prompt-Tokens); only the append waits.

Until then the question is in no store, so the row the request was placed on is not shown
to anyone else: not kept in the prefix cache, and written, when the answer never comes (an
upstream error, a cut stream, the client gone), by `Conversations.flush`, after the
response.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from proxy.loop.placement import NewPages
from proxy.store.base import Conversation, Path
from proxy.store.paths import build_path


@dataclass(frozen=True, slots=True)
class HeldWrite:
    """An append not issued yet: `messages` after position `anchor` of `target`."""

    target: Conversation  # the row the append replaces
    path: Path  # the target's whole path
    anchor: int
    messages: list[dict[str, Any]]
    hashes: list[str]
    made: NewPages  # what ingest made of the messages

    @property
    def end(self) -> int:
        return self.anchor + 1 + len(self.messages)

    def row(self) -> Conversation:
        """The row the append will write, as the store would return it."""
        return dataclasses.replace(
            self.target, length=self.end, version=self.target.version + 1,
            state=dict(self.made.state),
        )


def holds(made: NewPages, up_to: int | None) -> bool:
    """May this ingest's append wait for the answer? Only lean pages of a request below the
    threshold (`up_to` tokens), with nothing else to write (derived pages of other
    conversations, mutations)."""
    return (
        up_to is not None
        and not made.elsewhere
        and not made.mutations
        and int(made.state.get("tokens", 0)) <= up_to
    )


def root_path(tenant: str, conv_id: str) -> Path:
    """The path of a conversation that forks nothing (one just created): no read needed."""
    return build_path(tenant, conv_id, {conv_id: (None, 0)}.get)
