"""Experiments, not modes: parts of a short chat's turn taken out, to measure what each costs
(issue 15). `short_profile.py --ablate NAME` applies one before the app is made;
`instructions.py` counts a request's instructions with each, against the whole turn and
the pass-through in the same run.

- `store`: the turn's messages are neither made into pages nor stored; the conversation's
  row is moved on in memory as the append would have, so the chat's next turns still take
  the short path. What making and storing the pages costs (ingest, append, the writer).
- `append`: the pages are made, not stored: the store's append is skipped and its row made
  in place. What the append costs, the writer's part included.
- `sql`: the SQLite writer runs no statement for an append (and encodes no page): what its
  share of the append costs.
- `reads`: a new chat's store reads (its hashes, its row: `PageStore.open_root`) answer
  "nothing" without reading. What they cost.
- `tee`: nothing of memory on the loop: every chat request is relayed as `vm.mode = off`
  relays it, and its body and its answer's are written to a pipe read by another
  process (`cat`, which drops them). The loop's floor for a design where a worker
  process places and stores the turns (the issue 15 note of 2026-12-06, fifth session).

The same request again (`--chat same`, proxy.loop.short_chat.SameTurn):
- `version`: the store's version of a conversation is answered from the page cache's row,
  without a read. What the version check costs (on SQLite, a read transaction a request).
- `again`: the answer is not placed at all; the response names the conversation holding
  the history. What placing the answer costs.
- `relay`: the request, once decided, is relayed bare: no headers set, no answer read.
  The floor of the decision's cost, against `vm.mode = off`.

Patched so, the store is wrong; nothing reads it back within a run.

    python benchmarks/_ablations.py NAME serve --port P --upstream U --store S

runs `vm-proxy serve` with one applied, for a load generator (as benchmarks/_unstored.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any


def apply(name: str) -> None:
    if name == "none":
        return
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; one of {', '.join(ABLATIONS)}")
    _PARTS[name]()


def _store() -> None:
    from proxy.loop.prefix_cache import fingerprint
    from proxy.loop.short_chat import ShortTurn
    from proxy.store.base import Conversation
    from proxy.vm.identity import chain_hashes

    async def store(self: ShortTurn, answer: dict[str, Any] | None) -> None:
        if self.stored:
            return
        self.stored = True
        hashes = list(self.hashes)
        count = len(self.new)
        fingerprints = self.fingerprints
        if answer is not None:
            hashes.extend(chain_hashes(self.tenant, [answer], prev=hashes[-1]))
            count += 1
            fingerprints = [*fingerprints, fingerprint(answer)]
        row = self.row
        leaf = Conversation(
            row.tenant, row.conv_id, row.parent_id, row.fork_at, row.length + count,
            row.version + 1, {**row.state, "hash": hashes[-1]}, time.time(),
        )
        self.state.prefix_cache.remember(self.tenant, fingerprints, hashes[-1], leaf, self.path)

    ShortTurn.store = store  # type: ignore[method-assign]


def _append() -> None:
    from proxy.store.base import Conversation
    from proxy.store.cached import CachedStore

    async def append(
        self: CachedStore, tenant: str, conv_id: str, pages: Any, *, expected_version: int,
        new_length: int, state: Any = None, mutations: Any = (), durable: bool = True,
        response_id: str | None = None,
    ) -> Conversation:
        return Conversation(tenant, conv_id, None, 0, new_length, expected_version + 1,
                            dict(state or {}), time.time())

    CachedStore.append = append  # type: ignore[method-assign]


def _sql() -> None:
    from proxy.store.base import Conversation
    from proxy.store.sqlite import SQLiteStore

    def append(
        self: SQLiteStore, conn: Any, tenant: str, conv_id: str, pages: Any,
        expected_version: int, new_length: int, state: Any, mutations: Any,
        response_id: str | None,
    ) -> Conversation:
        return Conversation(tenant, conv_id, None, 0, new_length, expected_version + 1,
                            dict(state or {}), time.time())

    SQLiteStore._append = append  # type: ignore[method-assign]  # (sqlite_batch leaves it be)


def _reads() -> None:
    from proxy.store import sqlite_queries as q
    from proxy.store.sqlite_calls import SQLiteCalls

    small = SQLiteCalls._read_small

    async def read_small(self: SQLiteCalls, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if fn is q.root_reads:
            return {}, None  # a new chat's: nothing of it stored (true in a short chat's run)
        return await small(self, fn, *args, **kwargs)

    SQLiteCalls._read_small = read_small  # type: ignore[method-assign]


def _tee() -> None:
    import os
    import subprocess

    from proxy.http import routes
    from proxy.upstream.relay import relay_chat

    sink: list[int] = []  # the pipe's fd, once the reader is started

    def pipe() -> int:
        if not sink:
            drop = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            assert drop.stdin is not None
            os.set_blocking(drop.stdin.fileno(), False)
            sink.append(drop.stdin.fileno())
        return sink[0]

    async def tee_chat(state: Any, request: Any, body: Any, raw: bytes) -> Any:
        response = await relay_chat(state.upstream, request, raw,
                                    stream=body.get("stream") is True)
        answer = bytes(getattr(response, "body", b""))
        frame = b"".join((len(raw).to_bytes(4, "little"), raw,
                          len(answer).to_bytes(4, "little"), answer))
        try:
            os.write(pipe(), frame)
        except BlockingIOError:
            pass  # the pipe is full: this frame is dropped (the loop's cost is what counts)
        return response

    routes.handle_chat = tee_chat  # type: ignore[assignment]


def _version() -> None:
    from proxy.store.cached import CachedStore

    async def conversation_version(self: CachedStore, tenant: str, conv_id: str) -> int | None:
        cached = self._convs.get((tenant, conv_id))
        return None if cached is None else cached.version

    CachedStore.conversation_version = conversation_version  # type: ignore[method-assign]


def _again() -> None:
    from proxy.loop.short_chat import SameTurn

    async def place(self: SameTurn, answer: dict[str, Any]) -> str:
        return self.conv_id

    SameTurn.place = place  # type: ignore[method-assign]


def _relay() -> None:
    from proxy.loop import handler
    from proxy.upstream.relay import relay_chat

    async def answer_again(state: Any, request: Any, raw: bytes, again: Any) -> Any:
        return await relay_chat(state.upstream, request, raw,
                                stream=again.body.get("stream") is True)

    handler._answer_again = answer_again  # type: ignore[assignment]


_PARTS = {"store": _store, "append": _append, "sql": _sql, "reads": _reads, "tee": _tee,
          "version": _version, "again": _again, "relay": _relay}
ABLATIONS = ("none", *_PARTS)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from proxy.cli import main

    apply(sys.argv[1])
    raise SystemExit(main(sys.argv[2:]))
