"""Pages from OpenAI chat messages, and the small counters a conversation keeps between turns.

`ingest_messages` turns new messages into pages, once, with everything later turns need
precomputed: the four renderings and their token counts, the cost of the message when resent
verbatim (`extra["msg_tokens"]`), a hint, and derived pages:
- `img_N` for each image part (the URL or data kept, the nearby text as its caption);
- `claim_N` for decision- and fact-like sentences (see claims.py);
- segment jobs: every `segment_turns` user turns, the range of messages a `seg_N` summary
  should cover (the loop loads those pages and calls segments.build_summary).
Message page ids are `msg_<position>`, the 0-based position in the conversation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.tokens import TokenCounter, image_size, note_tool_names
from proxy.vm import mutations as events
from proxy.vm.attribution import speaker_of, stated_date
from proxy.vm.bounds import analysed, has_at_least
from proxy.vm.claims import claim_key, extract_claims
from proxy.vm.compress import abstract_text, make_hint, parse_json, reduce_text
from proxy.vm.costs import annotate_costs
from proxy.vm.mutations import Clock, Mutation
from proxy.vm.pages import Modality, Page, PageKind, make_page_id
from proxy.vm.segments import SegmentJob

# Tool output at least this long is an artifact (data); shorter output records a procedure.
ARTIFACT_TOKENS = 200
RECENT_CLAIMS = 32
CLAIM_KEYS = 256
USER_POSITIONS = 16
OPEN_CALLS = 64
# A hint that is a claim keeps the whole sentence up to this many words (the claim pages
# themselves use the same length).
CLAIM_HINT_WORDS = 14
# Messages whose opening date names when they (and the ones after them) were said; a tool
# result opening with a date is data.
_SPOKEN = ("user", "assistant", "system", "developer")


@dataclass
class Counters:
    """Per-conversation counters, persisted in the conversation state as `to_dict()`."""

    messages: int = 0
    turns: int = 0
    images: int = 0
    claims: int = 0
    segments: int = 0
    segment_from: int = 0
    segment_from_turn: int = 0
    # Summary ids not yet rolled up, per depth (0: segment summaries); bounded by fan-out.
    rollups: list[list[str]] = field(default_factory=list)
    # Tool calls not answered yet: call id -> function name (a tool result is billed with it).
    open_calls: dict[str, str] = field(default_factory=dict)
    recent_claims: list[str] = field(default_factory=list)
    # Leading system/developer messages (positions 0..preamble-1): the client's system prompt.
    preamble: int = 0
    # Positions of the latest user messages (bounded), to find the pinned tail.
    user_positions: list[int] = field(default_factory=list)
    # Short digests of recent claim sentences, so a repeated statement is one claim.
    claim_keys: list[str] = field(default_factory=list)
    # The date the latest message stating one at its start gave (vm/attribution.py): when
    # the messages since were said.
    said: str = ""
    # Messages (positions 0..derived-1) whose derived pages (claims, images, segment
    # summaries) and index entries are made; the ones after are lean pages (vm/lean.py),
    # derived when the conversation first needs memory. -1: all of them (`messages`).
    derived: int = -1

    def __post_init__(self) -> None:
        if self.derived < 0:
            self.derived = self.messages

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "turns": self.turns,
            "images": self.images,
            "claims": self.claims,
            "segments": self.segments,
            "segment_from": self.segment_from,
            "segment_from_turn": self.segment_from_turn,
            "rollups": [list(ids) for ids in self.rollups],
            "open_calls": dict(self.open_calls),
            "recent_claims": list(self.recent_claims),
            "claim_keys": list(self.claim_keys),
            "preamble": self.preamble,
            "user_positions": list(self.user_positions),
            "said": self.said,
            "derived": self.derived,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Counters:
        data = data or {}
        return cls(
            messages=int(data.get("messages", 0)),
            turns=int(data.get("turns", 0)),
            images=int(data.get("images", 0)),
            claims=int(data.get("claims", 0)),
            segments=int(data.get("segments", 0)),
            segment_from=int(data.get("segment_from", 0)),
            segment_from_turn=int(data.get("segment_from_turn", 0)),
            rollups=[[str(i) for i in ids] for ids in data.get("rollups", [])],
            open_calls={str(k): str(v) for k, v in dict(data.get("open_calls", {})).items()},
            recent_claims=[str(i) for i in data.get("recent_claims", [])],
            claim_keys=[str(i) for i in data.get("claim_keys", [])],
            preamble=int(data.get("preamble", 0)),
            user_positions=[int(p) for p in data.get("user_positions", [])],
            said=str(data.get("said") or ""),
            # States written before lean pages existed were derived throughout.
            derived=int(data.get("derived", -1)),
        )


@dataclass
class IngestResult:
    pages: list[Page]
    mutations: list[Mutation]
    segment_jobs: list[SegmentJob]


def ingest_messages(
    messages: Sequence[Mapping[str, Any]],
    *,
    first_position: int,
    counters: Counters,
    counter: TokenCounter,
    segment_turns: int,
    chain_hashes: Sequence[str] | None = None,
    clock: Clock = time.time,
) -> IngestResult:
    """Pages for `messages`, which sit at positions `first_position`, `first_position + 1`,
    ... of the conversation. Updates `counters` in place; message pages come first, in order."""
    now = clock()
    result = IngestResult([], [], [])
    derived: list[Page] = []
    for offset, message in enumerate(messages):
        position = first_position + offset
        role = str(message.get("role") or "")
        if role == "user":
            if counters.turns - counters.segment_from_turn >= segment_turns:
                seg_id = make_page_id("seg", counters.segments)
                result.segment_jobs.append(SegmentJob(seg_id, counters.segment_from, position))
                counters.segments += 1
                counters.segment_from = position
                counters.segment_from_turn = counters.turns
            counters.turns += 1
            counters.user_positions = [*counters.user_positions, position][-USER_POSITIONS:]
        elif role in ("system", "developer") and position == counters.preamble:
            counters.preamble += 1
        chain = chain_hashes[offset] if chain_hashes is not None else ""
        page, extra_pages = _message_pages(message, position, counters, counter, chain, now)
        result.pages.append(page)
        derived.extend(extra_pages)
        counters.messages = max(counters.messages, position + 1)
        counters.derived = max(counters.derived, position + 1)
    result.pages.extend(derived)
    turn = counters.turns
    for page in result.pages:
        result.mutations.append(events.mutation(turn, events.CREATE, page.page_id, at=now))
    return result


def _message_pages(
    message: Mapping[str, Any],
    position: int,
    counters: Counters,
    counter: TokenCounter,
    chain: str,
    now: float,
) -> tuple[Page, list[Page]]:
    role = str(message.get("role") or "")
    page_id = make_page_id("msg", position)
    turn = counters.turns
    images: list[Page] = []
    text = _message_text(
        message,
        lambda part, caption: images.append(
            _image_page(part, caption, page_id, role, position, turn, counters, counter, now)
        ),
    )
    function = ""
    call_ids: tuple[str, ...] = ()
    if role == "tool":
        call_id = str(message.get("tool_call_id") or "")
        function = counters.open_calls.pop(call_id, "")
        call_ids = (call_id,)
    msg_tokens = counter.message(message, {call_ids[0]: function} if call_ids else None)
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, Mapping)]
    if calls:
        names: dict[str, str] = {}
        note_tool_names(message, names)
        counters.open_calls.update(names)
        # Calls a client never answered must not pile up in the state: keep the newest.
        for stale in list(counters.open_calls)[:-OPEN_CALLS]:
            del counters.open_calls[stale]
        call_ids = tuple(names)
    kind, modality = _classify(message, role, text, calls, counter)
    claims = extract_claims(analysed(text), role)
    importance = {"system": 1.0, "developer": 1.0, "user": 0.6, "assistant": 0.5}.get(role, 0.4)
    if claims:
        importance = min(1.0, importance + 0.2)
    hint = _hint(role, analysed(text), calls, function, claims)
    extra: dict[str, Any] = {"enc": counter.name, "msg_tokens": msg_tokens}
    if function:
        extra["function"] = function
    speaker = speaker_of(message)
    if speaker:
        extra["speaker"] = speaker
    if role in _SPOKEN and modality is not Modality.STRUCTURED:
        counters.said = stated_date(text) or counters.said
    if counters.said:
        extra["said"] = counters.said
    page = _page(
        page_id,
        kind,
        modality,
        position,
        turn,
        role,
        text,
        hint,
        counter,
        chain_hash=chain,
        message=dict(message),
        importance=importance,
        tool_call_ids=call_ids,
        created_at=now,
        extra=extra,
    )
    derived = list(images)
    for sentence in claims:
        key = claim_key(sentence)
        if key in counters.claim_keys:
            continue
        counters.claim_keys = [*counters.claim_keys, key][-CLAIM_KEYS:]
        claim_id = make_page_id("claim", counters.claims)
        counters.claims += 1
        counters.recent_claims = [*counters.recent_claims, claim_id][-RECENT_CLAIMS:]
        derived.append(
            _page(
                claim_id,
                PageKind.CLAIM,
                Modality.TEXT,
                position,
                turn,
                role,
                sentence,
                make_hint(sentence, max_words=CLAIM_HINT_WORDS),
                counter,
                importance=0.9,
                covers=(page_id,),
                created_at=now,
                extra={"enc": counter.name},
                levels=(sentence, sentence),
            )
        )
    return page, derived


def _page(
    page_id: str,
    kind: PageKind,
    modality: Modality,
    anchor: int,
    turn: int,
    role: str,
    text: str,
    hint: str,
    counter: TokenCounter,
    *,
    levels: tuple[str, str] | None = None,
    **fields: Any,
) -> Page:
    """A page with its four renderings; `levels` overrides levels 1 and 2."""
    head = analysed(text)
    level1, level2 = levels if levels is not None else (reduce_text(head), abstract_text(head))
    level2 = level2 or hint
    renderings = (text, level1, level2, f"{page_id}: {hint}")
    # A message's text was just counted as its content (this is a memo hit), and levels
    # that are the text itself (a short message, a claim) cost the same.
    whole = counter.text(text)
    tokens = tuple(whole if r == text else counter.text(r, memo=False) for r in renderings)
    page = Page(
        page_id=page_id,
        kind=kind,
        modality=modality,
        anchor=anchor,
        turn=turn,
        role=role,
        renderings=renderings,
        tokens=(tokens[0], tokens[1], tokens[2], tokens[3]),
        hint=hint,
        **fields,
    )
    return annotate_costs(page, counter)


def message_text(message: Mapping[str, Any]) -> str:
    """Level 0 of a message as text (images as `[image]`), without making image pages."""
    content = message.get("content")
    if isinstance(content, str) and not message.get("tool_calls") and not message.get("audio"):
        return content
    return _message_text(message, lambda part, caption: None)


def _message_text(message: Mapping[str, Any], on_image: Callable[[Any, str], None]) -> str:
    """Level 0 of a message as text; image parts become `[image]` placeholders."""
    content = message.get("content")
    pieces: list[str] = []
    if isinstance(content, str):
        pieces.append(content)
    elif isinstance(content, list):
        caption = " ".join(
            str(p.get("text") or "")
            for p in content
            if isinstance(p, Mapping) and p.get("type") == "text"
        )
        for part in content:
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind in ("text", "input_text"):
                pieces.append(str(part.get("text") or ""))
            elif kind == "refusal":
                pieces.append(str(part.get("refusal") or ""))
            elif kind == "image_url":
                on_image(part, caption)
                pieces.append("[image]")
            elif isinstance(part.get("transcript"), str):
                pieces.append(f"[{kind} transcript] {part['transcript']}")
    audio = message.get("audio")
    if isinstance(audio, Mapping) and isinstance(audio.get("transcript"), str):
        pieces.append(f"[audio transcript] {audio['transcript']}")
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            pieces.append(f"→ {function.get('name')}({function.get('arguments') or ''})")
    return "\n".join(piece for piece in pieces if piece)


def _classify(
    message: Mapping[str, Any], role: str, text: str, calls: list[Any], counter: TokenCounter
) -> tuple[PageKind, Modality]:
    content = message.get("content")
    modality = Modality.TEXT
    if isinstance(content, list):
        kinds = {p.get("type") for p in content if isinstance(p, Mapping)}
        if "input_audio" in kinds or any("audio" in str(k) for k in kinds):
            modality = Modality.AUDIO if not {"text", "image_url"} & kinds else Modality.TEXT
        elif any("video" in str(k) for k in kinds):
            modality = Modality.VIDEO if "text" not in kinds else Modality.TEXT
    if isinstance(message.get("audio"), Mapping) and not content:
        modality = Modality.AUDIO
    if calls:
        return PageKind.PROCEDURE, modality
    if role == "tool":
        structured = parse_json(text) is not None
        modality = Modality.STRUCTURED if structured else modality
        big = len(text) >= ARTIFACT_TOKENS * 3 and counter.text(text) >= ARTIFACT_TOKENS
        return (PageKind.ARTIFACT if big else PageKind.PROCEDURE), modality
    if role in ("user", "assistant") and len(text) > 1200 and has_at_least(text, "```", 2):
        return PageKind.ARTIFACT, modality
    return PageKind.TRANSCRIPT, modality


def _hint(role: str, text: str, calls: list[Any], function: str, claims: list[str]) -> str:
    if calls:
        names = [str(c.get("function", {}).get("name") or "?") for c in calls]
        return "called " + ", ".join(names)
    if role == "tool":
        return f"{function or 'tool'} result: {make_hint(text, max_words=8)}"
    if claims:
        # What the message states, whole: a hint cut before "is now <value>" sends the
        # model to the wrong page.
        return make_hint(claims[0], max_words=CLAIM_HINT_WORDS)
    return make_hint(text)


def _image_page(
    part: Any,
    caption: str,
    message_id: str,
    role: str,
    position: int,
    turn: int,
    counters: Counters,
    counter: TokenCounter,
    now: float,
) -> Page:
    image = part.get("image_url")
    url = str(image.get("url") if isinstance(image, Mapping) else image or "")
    detail = str(image.get("detail") or "auto") if isinstance(image, Mapping) else "auto"
    if url.startswith("data:"):
        size = image_size(url)
        mime = url[5 : url.find(";")] if ";" in url else "image"
        source = f"inline {mime}" + (f" {size[0]}x{size[1]}" if size else "")
    else:
        source = url if len(url) <= 200 else url[:197] + "…"
    page_id = make_page_id("img", counters.images)
    counters.images += 1
    words = caption.split()
    about = " ".join(words[:40]) + (" …" if len(words) > 40 else "")
    hint = f"image in {message_id}" + (f": {make_hint(caption, max_words=8)}" if words else "")
    level0 = f"Image ({source}, detail {detail}) sent with {message_id}." + (
        f" Caption/context: {about}" if about else ""
    )
    level1 = f"Image ({source}) in {message_id}." + (f" {' '.join(words[:16])}" if words else "")
    return _page(
        page_id,
        PageKind.ARTIFACT,
        Modality.IMAGE,
        position,
        turn,
        role,
        level0,
        hint,
        counter,
        levels=(level1, hint),
        covers=(message_id,),
        importance=0.5,
        message={"role": role, "content": [dict(part)]},
        created_at=now,
        extra={"enc": counter.name, "url": url, "detail": detail},
    )
