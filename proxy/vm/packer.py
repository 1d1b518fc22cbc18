"""`pack_request`: the one call that turns a client request plus memory into the upstream body.

Upstream message order:
1. one developer (or system, per `vm.developer_role`) message whose parts go from the least
   to the most changing, so upstream prompt caches keep hitting:
   client system prompt, mode rules, `<VM:CONTEXT>` (summaries and claims first), then
   `<VM:MANIFEST_JSON>` (it names the turn, so it changes every time);
2. the pinned recent turns, verbatim, as real messages (tool exchanges whole);
and `tools` = the client's tools plus the VM tools (none in passive mode).

Everything (messages, tool schemas and the reply's max tokens) fits `vm.context_budget`
as counted by proxy.tokens; counts come from per-page caches, so the cost of packing grows
with the budget and the candidates, not with the conversation. Every client field other than
messages, tools and a clamped max_tokens/max_completion_tokens passes through untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.config import VMSettings
from proxy.store.base import Mutation
from proxy.tokens import TokenCounter
from proxy.vm import context, manifest
from proxy.vm import mutations as events
from proxy.vm.escape import escape_block
from proxy.vm.page_table import PageTable
from proxy.vm.pages import Page
from proxy.vm.pinning import PinnedPlan, fit_pinned, plan_pinned
from proxy.vm.prompts import rules
from proxy.vm.tools import vm_tool_names, vm_tool_schemas
from proxy.vm.working_set import Mapped, ScoredPage, Selection, select_context

# A mapped page also costs its manifest entry; about this many tokens.
MANIFEST_ENTRY_TOKENS = 20
# The reply may claim at most this share of the budget when the client asks for more.
MAX_REPLY_SHARE = 0.5
# The manifest's available list takes at most about this share of the budget (an entry
# costs some 25 tokens), within vm.manifest_max_entries.
MANIFEST_SHARE = 0.12
MANIFEST_ENTRY_COST = 25
MODES = ("strict", "relaxed", "passive")


@dataclass
class PackedRequest:
    body: dict[str, Any]
    mapped: dict[str, int]  # page id -> level in <VM:CONTEXT>
    pinned_ids: list[str]
    prompt_tokens: int
    reply_tokens: int
    tool_names: dict[str, str]
    mutations: list[Mutation]
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    over_budget: bool = False

    @property
    def mapped_ids(self) -> list[str]:
        return list(self.mapped)

    def in_view(self) -> dict[str, int]:
        """Page id -> level the model sees (pinned messages at 0), for FaultState."""
        return {**dict.fromkeys(self.pinned_ids, 0), **self.mapped}


def pack_request(
    body: Mapping[str, Any],
    *,
    system_messages: Sequence[Mapping[str, Any]],
    tail: Sequence[Page],
    candidates: Sequence[ScoredPage],
    available: Sequence[Page] = (),
    table: PageTable,
    settings: VMSettings,
    mode: str,
    counter: TokenCounter,
    turn: int,
    total_pages: int | None = None,
    clock: Callable[[], float] = time.time,
) -> PackedRequest:
    """Build the upstream body for one turn. `tail` holds the message pages from the pinned
    start (prefetch.pinned_start) to the end, in order; `candidates` the pages that may be
    mapped; `available` further pages the manifest may list. Does not modify `table`."""
    if mode not in MODES:
        raise ValueError(f"pack_request: mode must be one of {MODES}, got {mode!r}")
    client_tools = [t for t in body.get("tools") or () if isinstance(t, Mapping)]
    names = vm_tool_names(client_tools)
    tools = client_tools + (vm_tool_schemas(names) if mode != "passive" else [])
    reply, reply_field = _reply_budget(body, settings)
    prefix = _prefix(system_messages, mode, names)
    role = settings.developer_role
    fmt = counter.format
    fixed = (
        fmt.reply_primer
        + fmt.per_message
        + counter.text(role)
        + counter.text(prefix)
        + counter.text(_FRAME)
        + counter.tools(tools, has_system=True)
    )
    room = settings.context_budget - reply - fixed
    units = plan_pinned(tail, pin_last_turns=settings.pin_last_turns, counter=counter)
    policy = manifest.Policy(
        faults=mode != "passive",
        max_faults_per_turn=settings.max_faults_per_turn,
        max_fault_tokens_per_turn=settings.max_fault_tokens_per_turn,
    )
    order = {c.page.page_id: c.relevance for c in candidates}
    listable = [*(c.page for c in candidates), *available]
    by_id = {p.page_id: p for p in listable}
    ranked: list[Page] = []  # every listable page, best first; ranked once, when first needed

    def manifest_for(
        pinned_ids: list[str], mapped: Sequence[Mapped], shown: set[str]
    ) -> tuple[dict[str, Any], int]:
        if not ranked:
            ranked.extend(manifest.rank_available(listable, exclude=set(), order=order))
        data = _manifest(
            turn, mode, pinned_ids, mapped, ranked, shown, total_pages, settings, policy
        )
        return data, manifest.manifest_tokens(data, counter, by_id)

    # The manifest must fit beside the pinned turns, whatever else gets mapped.
    every = [p.page_id for u in units for p in u.pages]
    reserve = manifest_for(every, [], set(every))[1]
    pinned = fit_pinned(units, room - reserve, counter)
    pinned_ids = [p.page_id for p in pinned.pages]
    skip = set(pinned_ids)
    pool = [*candidates, *(ScoredPage(p, 0.0, "unpinned") for p in pinned.dropped)]
    pool = [c for c in pool if c.page.page_id not in skip]
    listable += [c.page for c in pool if c.reason == "unpinned"]
    by_id.update((c.page.page_id, c.page) for c in pool)
    ranked.clear()

    def cost(page: Page, level: int) -> int:
        return context.block_tokens(page, level, counter) + MANIFEST_ENTRY_TOKENS

    budget = room - pinned.tokens - manifest_for(pinned_ids, [], skip)[1]
    while True:
        selection = select_context(
            pool,
            budget=max(budget, 0),
            cost=cost,
            table=table,
            turn=turn,
            full_pages=settings.prefetch_pages,
        )
        data, listed = manifest_for(pinned_ids, selection.mapped, skip | set(selection.levels()))
        blocks = sum(context.block_tokens(m.page, m.level, counter) for m in selection.mapped)
        prompt = fixed + pinned.tokens + blocks + listed
        overshoot = prompt + reply - settings.context_budget
        if overshoot <= 0 or not selection.mapped:
            break
        budget = selection.tokens - overshoot
    rendered = manifest.render_manifest(data)
    content = prefix + "\n\n" + context.render_context(selection.mapped) + "\n\n" + rendered
    upstream = _body(body, role, content, pinned, tools, reply_field, reply)
    notes = [*pinned.notes, *selection.notes]
    over = pinned.over_budget or overshoot > 0
    if overshoot > 0:
        notes.append(f"prompt exceeds the budget by {overshoot} tokens")
    return PackedRequest(
        body=upstream,
        mapped=selection.levels(),
        pinned_ids=pinned_ids,
        prompt_tokens=prompt,
        reply_tokens=reply,
        tool_names=names,
        mutations=_mutations(selection, pinned_ids, table, turn, clock()),
        manifest=data,
        notes=notes,
        over_budget=over,
    )


def record_packed(table: PageTable, packed: PackedRequest, turn: int) -> None:
    """Note in the page table what went upstream (call once the request is sent)."""
    table.note_mapped(packed.mapped, turn)


# The developer message between prefix, blocks and manifest (those are counted apart).
_FRAME = "\n\n" + context.OPEN + "\n" + "\n" + context.CLOSE + "\n\n"


def _prefix(
    system_messages: Sequence[Mapping[str, Any]], mode: str, names: Mapping[str, str]
) -> str:
    texts = [_text(m.get("content")) for m in system_messages]
    system = "\n\n".join(t for t in texts if t)
    mode_rules = rules(mode, names)
    return escape_block(system) + "\n\n" + mode_rules if system else mode_rules


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text") or "")
            for p in content
            if isinstance(p, Mapping) and p.get("type") in ("text", "input_text")
        )
    return ""


def _reply_budget(body: Mapping[str, Any], settings: VMSettings) -> tuple[int, str | None]:
    """Tokens kept for the reply, and the client field to clamp (None: the client set none)."""
    cap = int(settings.context_budget * MAX_REPLY_SHARE)
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return min(value, cap), name
    return min(settings.reply_reserve_tokens, cap), None


def _manifest(
    turn: int,
    mode: str,
    pinned_ids: Sequence[str],
    mapped: Sequence[Mapped],
    ranked_all: Sequence[Page],
    shown: set[str],
    total_pages: int | None,
    settings: VMSettings,
    policy: manifest.Policy,
) -> dict[str, Any]:
    ranked = [p for p in ranked_all if p.page_id not in shown]
    return manifest.build_manifest(
        turn=turn,
        mode=mode,
        pinned=pinned_ids,
        mapped=mapped,
        available=ranked,
        total_pages=total_pages,
        max_entries=settings.manifest_max_entries,
        policy=policy,
    )


def _body(
    client: Mapping[str, Any],
    role: str,
    content: str,
    pinned: PinnedPlan,
    tools: list[Mapping[str, Any]],
    reply_field: str | None,
    reply: int,
) -> dict[str, Any]:
    upstream = dict(client)
    upstream["messages"] = [{"role": role, "content": content}, *map(dict, pinned.messages)]
    if tools:
        upstream["tools"] = [dict(t) for t in tools]
    else:
        upstream.pop("tools", None)
    if reply_field is not None and upstream.get(reply_field) != reply:
        upstream[reply_field] = reply
    return upstream


def _mutations(
    selection: Selection, pinned_ids: Sequence[str], table: PageTable, turn: int, at: float
) -> list[Mutation]:
    records = [events.mutation(turn, events.PIN, pid, level=0, at=at) for pid in pinned_ids]
    now = selection.levels()
    for page_id, level in sorted(now.items()):
        entry = table.get(page_id)
        was = entry.level if entry is not None and entry.last_mapped == turn - 1 else None
        event = events.COMPRESS if was is not None and level > was else events.MAP
        records.append(events.mutation(turn, event, page_id, level=level, at=at))
    pinned = set(pinned_ids)
    for page_id, entry in sorted(table.entries.items()):
        if entry.last_mapped == turn - 1 and page_id not in now and page_id not in pinned:
            records.append(events.mutation(turn, events.EVICT, page_id, at=at))
    return records
