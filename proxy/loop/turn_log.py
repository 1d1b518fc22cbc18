"""What a VM turn leaves in the mutation log about its prompt, and the memory metrics of a
turn.

The packer describes the prompt (proxy.vm.turn_record); this adds what only the loop knows:
the digests of the first upstream body as it was sent (whatever the dialect made of it: a
chat completion, or a Responses request with the prompt as its input), the request's static
part (logged once while it stays the same: the conversation state's `replay` entry names
the turns that logged the latest ones), and what the loop did. The share of the prompt that
repeats the previous turn's is measured against that previous turn's digests, kept in the
same state entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.metrics import Metrics
from proxy.vm.mutations import STATIC, Mutation, turn_mutation
from proxy.vm.sent import SentBody, digest_body, parse_parts, prefix_share
from proxy.vm.turn_record import TurnRecord

# Conversation-state entry (carried by proxy.loop.storing).
STATE_KEY = "replay"
# Static parts remembered as logged: a turn that falls back to passive mode (other rules,
# no VM tools) alternates with the usual one.
KNOWN_STATICS = 4
RESPONSES_PATH = "/responses"

_COUNTS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
_SHARES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
LEVEL_NAMES = ("0", "1", "2", "3")


@dataclass
class TurnLog:
    record: TurnRecord | None = None
    known: list[tuple[str, int]] = field(default_factory=list)  # (static hash, turn logged)
    previous_parts: list[int] = field(default_factory=list)
    sent: SentBody | None = None
    share: float | None = None
    # The client API the turn serves: "chat", or "responses" (its calls made from the chat
    # prompt: a Responses request's input, or a chat body without the carried items).
    dialect: str = "chat"

    @classmethod
    def start(cls, record: TurnRecord | None, state: Mapping[str, Any]) -> TurnLog:
        """The log of a turn packed as `record`, on a conversation whose state is `state`."""
        saved = state.get(STATE_KEY)
        known: list[tuple[str, int]] = []
        parts: list[int] = []
        if isinstance(saved, Mapping):
            for entry in saved.get("static") or ():
                if isinstance(entry, list) and len(entry) == 2:
                    known.append((str(entry[0]), int(entry[1])))
            parts = parse_parts(str(saved.get("parts") or ""))
        return cls(record, known, parts)

    def note_sent(self, path: str, body: Mapping[str, Any]) -> None:
        """An upstream call is made with `body`: the first one is the turn's prompt."""
        if self.sent is not None or self.record is None:
            return
        key = "input" if path == RESPONSES_PATH else "messages"
        self.sent = digest_body(body, key, self.record.prefix, self.dialect)
        same_static = bool(self.known) and self.known[0][0] == self.sent.static_hash
        self.share = (
            prefix_share(self.sent.parts, self.sent.lengths, self.previous_parts)
            if same_static else 0.0
        )

    def finish(self, loop: Mapping[str, int], at: float) -> tuple[list[Mutation], dict[str, Any]]:
        """The turn's log events and the state entry to keep, once the turn has ended."""
        record, sent = self.record, self.sent
        if record is None:
            return [], {}
        events: list[Mutation] = []
        known = list(self.known)
        if sent is not None:
            logged = dict(known).get(sent.static_hash)
            if logged is None:
                detail = orjson.dumps(sent.static).decode()
                events.append(Mutation(record.turn, STATIC, sent.static_hash, detail=detail,
                                       at=at))  # fmt: skip
                logged = record.turn
            record.static, record.static_turn = sent.static_hash, logged
            record.sent, record.parts = sent.digest, sent.parts_hex
            known = [(sent.static_hash, logged), *(k for k in known if k[0] != sent.static_hash)]
        record.loop = dict(loop)
        events.append(turn_mutation(record, at))
        state = {
            "static": [list(k) for k in known[:KNOWN_STATICS]],
            "parts": sent.parts_hex if sent is not None else "",
        }
        return events, state


def observe_turn(
    metrics: Metrics,
    log: TurnLog,
    *,
    faults: int,
    searches: int,
    sent: int,
    full: int,
) -> None:
    """The memory-health metrics of one finished VM turn."""
    metrics.histogram("vm_turn_faults", help="Page faults per VM turn",
                      buckets=_COUNTS).observe(faults)  # fmt: skip
    metrics.histogram("vm_turn_searches", help="Memory searches per VM turn",
                      buckets=_COUNTS).observe(searches)  # fmt: skip
    if full > 0:
        metrics.histogram(
            "vm_turn_prompt_share", buckets=_SHARES,
            help="Prompt tokens sent upstream per turn, as a share of the full history's",
        ).observe(sent / full)
    if log.share is not None:
        metrics.histogram(
            "vm_turn_prefix_share", buckets=_SHARES,
            help="Share of a turn's first prompt (bytes, whole messages) that repeats the "
            "previous turn's: what upstream prompt caches can reuse",
        ).observe(log.share)
    record = log.record
    if record is None:
        return
    levels = [0, 0, 0, 0]
    excerpts = 0
    for line in record.lines:
        levels[min(max(line.level, 0), 3)] += 1
        excerpts += line.words > 0
    for name, count in zip(LEVEL_NAMES, levels, strict=True):
        metrics.histogram(
            "vm_turn_pages_mapped", {"level": name}, buckets=_COUNTS,
            help="Pages shown in a turn's recalled context, by level (1 includes excerpts)",
        ).observe(count)
    metrics.histogram("vm_turn_pages_excerpted", buckets=_COUNTS,
                      help="Pages shown as the passages matching the question, per turn",
                      ).observe(excerpts)  # fmt: skip
    metrics.histogram("vm_turn_pages_pinned", buckets=_COUNTS,
                      help="Messages sent verbatim (the window) per turn",
                      ).observe(len(record.window))  # fmt: skip
