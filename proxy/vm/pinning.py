"""The pinned tail: the recent turns that go upstream verbatim, as real messages.

`plan_pinned` groups the tail of the conversation into units that are sent or dropped whole:
a user turn's messages, and within it every assistant tool-call message together with its
tool results (an exchange is never split). The current turn and the `pin_last_turns - 1`
turns before it are pinned. `fit_pinned` makes the units fit a token budget, degrading in
this order and saying so in its notes:
1. long tool results of older turns are replaced by their level-1 extract;
2. the oldest pinned turn is dropped (its pages become ordinary candidates again);
3. inside the current turn (agent loops live there): older exchanges' tool results are
   reduced, then the oldest exchanges dropped;
4. the current user message and the last, still open, exchange are never dropped; their tool
   results may be reduced, and as a very last resort the largest message keeps only its
   beginning and end (a note says how to page the rest in). If even that does not fit,
   `over_budget` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from proxy.tokens import TokenCounter
from proxy.vm.pages import Page

# A tool result shorter than this is left as it is when reducing.
REDUCE_ABOVE_TOKENS = 120
# A message clipped to fit keeps at least this much of itself (else the prompt is over the
# budget, and says so); the note saying so costs about CLIP_NOTE_TOKENS.
MIN_CLIPPED_TOKENS = 100
CLIP_NOTE_TOKENS = 48
# What must be sent of the current turn (its question, its open exchange), cut because it
# is larger than the budget on its own, keeps at least this share of the budget.
OPEN_SHARE = 0.6


@dataclass(frozen=True, slots=True)
class PinnedUnit:
    pages: tuple[Page, ...]
    messages: tuple[Mapping[str, Any], ...]
    tokens: int
    age: int  # 0: the current turn, 1: the turn before, ...
    protected: bool = False
    reduced: bool = False


@dataclass
class PinnedPlan:
    units: list[PinnedUnit]
    tokens: int
    dropped: list[Page] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    over_budget: bool = False
    shortened: set[str] = field(default_factory=set)  # pages sent reduced or clipped
    clipped: set[str] = field(default_factory=set)  # those of them cut (beginning and end)

    @property
    def messages(self) -> list[Mapping[str, Any]]:
        return [m for unit in self.units for m in unit.messages]

    @property
    def pages(self) -> list[Page]:
        return [p for unit in self.units for p in unit.pages]


def message_tokens(page: Page, counter: TokenCounter) -> int:
    """What resending this message page costs (cached at ingest for this encoding)."""
    cached = page.extra.get("msg_tokens")
    if isinstance(cached, int) and page.extra.get("enc") == counter.name:
        return cached
    message = page.message or {"role": page.role, "content": page.text}
    function = str(page.extra.get("function") or "")
    call_id = page.tool_call_ids[0] if page.tool_call_ids else ""
    return counter.message(message, {call_id: function})


def plan_pinned(
    tail: Sequence[Page], *, pin_last_turns: int, counter: TokenCounter
) -> list[PinnedUnit]:
    """Units of the last `max(pin_last_turns, 1)` user turns of `tail` (message pages in
    conversation order), oldest first."""
    turns: list[list[Page]] = []
    for page in tail:
        if page.message is None:
            continue
        if page.role == "user" or not turns:
            turns.append([])
        turns[-1].append(page)
    keep = turns[-max(pin_last_turns, 1) :] if turns else []
    units: list[PinnedUnit] = []
    for age, pages in zip(range(len(keep) - 1, -1, -1), keep, strict=True):
        groups = _exchanges(pages)
        for index, group in enumerate(groups):
            opens_turn = index == 0 and group[0].role == "user"
            open_exchange = index == len(groups) - 1 and bool(_calls(group[0]))
            protected = age == 0 and (opens_turn or open_exchange)
            units.append(_unit(group, age, protected, counter))
    return units


def fit_pinned(units: Sequence[PinnedUnit], budget: int, counter: TokenCounter) -> PinnedPlan:
    kept = list(units)
    plan = PinnedPlan(kept, sum(u.tokens for u in kept))
    if plan.tokens <= budget:
        return plan
    oldest = max((u.age for u in kept), default=0)
    for age in range(oldest, 0, -1):
        _reduce(plan, counter, lambda u, a=age: u.age == a)
        if plan.tokens <= budget:
            return plan
    for age in range(oldest, 0, -1):
        _drop(plan, lambda u, a=age: u.age == a, f"dropped pinned turn (age {age})")
        if plan.tokens <= budget:
            return plan
    _reduce(plan, counter, lambda u: not u.protected)
    if _tokens(plan, _protected) > budget:
        # What must be sent does not fit even alone, so it is cut anyway: first, before
        # any step of the turn is dropped for room that cut would make. The open results
        # keep as much of themselves as fits (their beginning and end, more telling than
        # a reduction: the rows of a JSON array, the last lines of a log) in the room the
        # other steps leave, and at least OPEN_SHARE of the budget.
        # A room too small for that (each cut keeps MIN_CLIPPED_TOKENS and a note) gets
        # their reductions instead.
        room = max(budget - (plan.tokens - _tokens(plan, _protected)), int(budget * OPEN_SHARE))
        cut = _copy(plan)
        _clip_largest(cut, room, counter, which=_protected)
        if _tokens(cut, _protected) <= room:
            plan = cut
        else:
            _reduce(plan, counter, _protected)
    while plan.tokens > budget:
        droppable = [u for u in plan.units if not u.protected]
        if not droppable:
            break
        first = droppable[0]
        _drop(plan, lambda u, f=first: u is f, f"dropped exchange {first.pages[0].page_id}")
    if plan.tokens > budget:
        _reduce(plan, counter, lambda u: True)
    if plan.tokens > budget:
        _clip_largest(plan, budget, counter)
    if plan.tokens > budget:
        plan.over_budget = True
        plan.notes.append(f"pinned messages need {plan.tokens} tokens, budget {budget}")
    return plan


def _copy(plan: PinnedPlan) -> PinnedPlan:
    return PinnedPlan(list(plan.units), plan.tokens, list(plan.dropped), list(plan.notes),
                      plan.over_budget, set(plan.shortened), set(plan.clipped))


def _protected(unit: PinnedUnit) -> bool:
    return unit.protected


def _tokens(plan: PinnedPlan, which: Callable[[PinnedUnit], bool]) -> int:
    return sum(u.tokens for u in plan.units if which(u))


def _exchanges(pages: Sequence[Page]) -> list[list[Page]]:
    """Split one turn into units: each assistant tool-call message with its results."""
    groups: list[list[Page]] = []
    answering: set[str] = set()
    for page in pages:
        if page.role == "tool" and groups and answering & set(page.tool_call_ids):
            groups[-1].append(page)
            continue
        groups.append([page])
        answering = set(page.tool_call_ids) if _calls(page) else set()
    return groups


def _calls(page: Page) -> bool:
    return bool(page.message and page.message.get("tool_calls"))


def _unit(group: Sequence[Page], age: int, protected: bool, counter: TokenCounter) -> PinnedUnit:
    messages = tuple(p.message or {"role": p.role, "content": p.text} for p in group)
    tokens = sum(message_tokens(p, counter) for p in group)
    return PinnedUnit(tuple(group), messages, tokens, age, protected)


def reduced_message(page: Page, message: Mapping[str, Any]) -> dict[str, Any]:
    """A long tool result as its level-1 extract, saying how to read the rest."""
    note = f'\n[reduced by vm-proxy: page_fault("{page.page_id}", 0) for all of it]'
    return {**message, "content": page.rendering(1) + note}


def _reduce(plan: PinnedPlan, counter: TokenCounter, which: Any) -> None:
    for i, unit in enumerate(plan.units):
        if unit.reduced or not which(unit):
            continue
        messages = []
        changed = False
        for page, message in zip(unit.pages, unit.messages, strict=True):
            if page.role == "tool" and page.tokens[0] > REDUCE_ABOVE_TOKENS:
                message = reduced_message(page, message)
                plan.shortened.add(page.page_id)
                changed = True
            messages.append(message)
        if not changed:
            continue
        tokens = sum(counter.message(m, _call_names(unit.pages)) for m in messages)
        plan.tokens += tokens - unit.tokens
        plan.units[i] = replace(unit, messages=tuple(messages), tokens=tokens, reduced=True)
        plan.notes.append(f"reduced tool output in {unit.pages[0].page_id}")


def _clip_largest(
    plan: PinnedPlan,
    budget: int,
    counter: TokenCounter,
    which: Callable[[PinnedUnit], bool] = lambda unit: True,
) -> None:
    """Until the units `which` selects take at most `budget` tokens (all of them: the last
    resort, when what must be sent is larger than the budget on its own): the largest of
    their text messages, as they are now (a tool result may be its reduction already),
    keeps its beginning and end, as much as fits, and says how to read the rest."""
    tries: dict[str, int] = {}  # page id -> times clipped
    while (over := _tokens(plan, which) - budget) > 0:
        found = [
            (counter.text(text), i, j)
            for i, unit in enumerate(plan.units) if which(unit)
            for j, (page, message) in enumerate(zip(unit.pages, unit.messages, strict=True))
            if page.tokens[0] > REDUCE_ABOVE_TOKENS and tries.get(page.page_id, 0) < _CLIP_TRIES
            and (text := _clippable(message)[0])
        ]
        if not found:
            return
        size, i, j = max(found)
        page_id = plan.units[i].pages[j].page_id
        tries[page_id] = tries.get(page_id, 0) + 1
        # A margin for where the cut falls between tokens, and for the note's own.
        keep = size - over - CLIP_NOTE_TOKENS - size // 100
        if keep < MIN_CLIPPED_TOKENS:
            keep = MIN_CLIPPED_TOKENS
            tries[page_id] = _CLIP_TRIES  # as short as it may get; the next one after
            if keep + CLIP_NOTE_TOKENS >= size:
                continue
        _clip(plan, i, j, keep / size, counter)


def _clippable(
    message: Mapping[str, Any],
) -> tuple[str, Callable[[str], dict[str, Any]]]:
    """The text of `message` a clip cuts (its content, or the longest text part of a list
    of parts, an image's caption say), and how to put the cut text back."""
    content = message.get("content")
    if isinstance(content, str):
        return content, lambda text: {**message, "content": text}
    if not isinstance(content, list):
        return "", lambda text: dict(message)
    texts = [(len(str(part.get("text") or "")), k) for k, part in enumerate(content)
             if isinstance(part, Mapping) and part.get("type") in ("text", "input_text")]
    if not texts:
        return "", lambda text: dict(message)
    k = max(texts)[1]

    def put_back(text: str) -> dict[str, Any]:
        parts = list(content)
        parts[k] = {**parts[k], "text": text}
        return {**message, "content": parts}

    return str(content[k].get("text") or ""), put_back


# A message is clipped again when its text had more tokens than its share of characters
# suggested (tokens are not spread evenly), at most this often.
_CLIP_TRIES = 4
# A clip's note starts so (a message clipped again loses its earlier note with its middle).
_CLIP_MARK = "[…"


def _clip(plan: PinnedPlan, i: int, j: int, share: float, counter: TokenCounter) -> None:
    """Message `j` of unit `i` keeping `share` of its text: its beginning and its end."""
    unit = plan.units[i]
    page, message = unit.pages[j], unit.messages[j]
    text, put_back = _clippable(message)
    head, tail = int(len(text) * share * 0.7), int(len(text) * share * 0.3)
    kept = counter.text(text[:head]) + (counter.text(text[-tail:]) if tail else 0)
    note = (f"\n{_CLIP_MARK} {max(page.tokens[0] - kept, 0)} tokens of this message left out by"
            f" vm-proxy to fit the context budget; page_fault(\"{page.page_id}\", 1) for a"
            " reduction of all of it …]\n")
    clipped = put_back(text[:head] + note + (text[-tail:] if tail else ""))
    messages = [*unit.messages[:j], clipped, *unit.messages[j + 1 :]]
    tokens = sum(counter.message(m, _call_names(unit.pages)) for m in messages)
    plan.tokens += tokens - unit.tokens
    plan.units[i] = replace(unit, messages=tuple(messages), tokens=tokens, reduced=True)
    plan.shortened.add(page.page_id)
    plan.clipped.add(page.page_id)
    plan.notes.append(f"clipped {page.page_id} to fit the budget")


def _call_names(pages: Sequence[Page]) -> dict[str, str]:
    """Call id -> function name of the tool results among `pages` (a result is billed
    with its function's name)."""
    return {
        p.tool_call_ids[0]: str(p.extra.get("function") or "")
        for p in pages
        if p.role == "tool" and p.tool_call_ids
    }


def _drop(plan: PinnedPlan, which: Any, note: str) -> None:
    gone = [u for u in plan.units if which(u) and not u.protected]
    if not gone:
        return
    gone_ids = {id(u) for u in gone}
    plan.units[:] = [u for u in plan.units if id(u) not in gone_ids]
    plan.tokens -= sum(u.tokens for u in gone)
    plan.dropped.extend(p for u in gone for p in u.pages)
    plan.notes.append(note)
