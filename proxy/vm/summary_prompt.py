"""What a summarizing model (`vm.summarizer`) is asked, and the checking of its answer.

One call per segment summary page (`seg_N`) does the whole batch for that stretch of
conversation: the summary itself (levels 1 and 2 of the `seg_N` page), a level-2 abstract
for each long message in it, and the claims it states (depth 0 only; a roll-up summarises
summaries). The answer is one JSON object whose every id must be one the prompt named, so
a summary never claims to come from a page it did not read. Anything else is malformed,
and the extractive forms stay (proxy.loop.summarizer).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.vm.pages import Page

# A message longer than this (level-0 tokens) gets an abstract written; a shorter one is
# already about as short as its abstract would be.
ABSTRACT_FROM_TOKENS = 60
# What of one message the model reads: the head of a long tool output tells what it is.
INPUT_WORDS_PER_PAGE = 250
MAX_CLAIMS = 6
SUMMARY_WORDS = 90
POINT_WORDS = 30
MAX_POINTS = 8
ABSTRACT_WORDS = 45
CLAIM_WORDS = 40
MIN_CLAIM_WORDS = 3
# The reply's cap: a summary, eight points, abstracts and claims fit well within it.
REPLY_TOKENS = 900

SYSTEM_PROMPT = """\
You write the memory of a long conversation. Read the numbered pages and answer with one \
JSON object, nothing else:
{"summary": "...", "points": ["..."], "abstracts": {"<page id>": "..."}, \
"claims": [{"page": "<page id>", "text": "..."}]}
- summary: at most 90 words on what this stretch is about.
- points: at most 8 short key points.
- abstracts: one for each id listed under ABSTRACTS, at most 45 words each.
- claims: at most 6 facts, decisions, dates or commitments stated in one page, each \
a self-contained sentence naming its subject; "page" is the id of the page stating it.
Keep names, numbers, amounts, dates and decisions exactly as written. Do not guess: \
leave out what the pages do not say. Use only ids that appear below."""


class MalformedSummary(ValueError):
    """The model's answer is not the JSON object asked for (the reason says what is off)."""


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """A checked answer: ids in `abstracts` and `claims` are among those asked about."""

    summary: str
    points: tuple[str, ...] = ()
    abstracts: tuple[tuple[str, str], ...] = ()  # (page id, abstract)
    claims: tuple[tuple[str, str], ...] = ()  # (page id stating it, claim sentence)


@dataclass(frozen=True, slots=True)
class SummaryPrompt:
    """The chat messages of one summarizer call, and which ids its answer may use."""

    messages: tuple[dict[str, str], ...]
    abstract_ids: tuple[str, ...]
    source_ids: tuple[str, ...]
    wants_claims: bool


def abstract_wanted(page: Page) -> bool:
    """Whether a message page's level-2 abstract is worth a model's writing."""
    return page.is_message and page.role in ("user", "assistant", "tool") and (
        page.tokens[0] > ABSTRACT_FROM_TOKENS
    )


def build_prompt(summary: Page, covered: Sequence[Page]) -> SummaryPrompt:
    """The call for the `seg_N` page `summary`, given the pages it covers (messages for a
    segment, summaries for a roll-up)."""
    depth = int(summary.extra.get("depth", 0))
    lines: list[str] = []
    for page in sorted(covered, key=lambda p: (p.anchor, p.page_id)):
        if depth:
            text = page.rendering(2)
            label = f"[{page.page_id}] summary of {page.extra.get('span', '')}".rstrip()
        else:
            text = _clipped(page.text, INPUT_WORDS_PER_PAGE)
            label = f"[{page.page_id}] {_speaker(page)}"
        if text.strip():
            lines.append(f"{label}: {text}")
    abstract_ids = tuple(p.page_id for p in covered if not depth and abstract_wanted(p))
    wants_claims = not depth
    task = [f"PAGES ({summary.extra.get('span', 'this stretch')}):", *lines]
    task.append("ABSTRACTS: " + (", ".join(abstract_ids) if abstract_ids else "none"))
    if not wants_claims:
        task.append("CLAIMS: none (these are summaries; leave claims empty)")
    return SummaryPrompt(
        messages=(
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "\n".join(task)},
        ),
        abstract_ids=abstract_ids,
        source_ids=tuple(p.page_id for p in covered) if wants_claims else (),
        wants_claims=wants_claims,
    )


def parse_answer(text: str, prompt: SummaryPrompt) -> ModelSummary:
    """The checked answer to `prompt`; raises MalformedSummary when it is not one."""
    value = _json_object(text)
    summary = _text(value.get("summary"), "summary", SUMMARY_WORDS)
    points = _list(value.get("points", []), "points", MAX_POINTS)
    abstracts = value.get("abstracts", {})
    if not isinstance(abstracts, Mapping):
        raise MalformedSummary("abstracts is not an object")
    claims = _list(value.get("claims", []), "claims", MAX_CLAIMS if prompt.wants_claims else 0)
    return ModelSummary(
        summary=summary,
        points=tuple(_text(p, "a point", POINT_WORDS) for p in points),
        abstracts=tuple(
            (_known(page_id, prompt.abstract_ids, "abstract"),
             _text(abstract, f"abstract of {page_id}", ABSTRACT_WORDS))
            for page_id, abstract in abstracts.items()
        ),
        claims=tuple(_claim(claim, prompt.source_ids) for claim in claims),
    )


def _json_object(text: str) -> Mapping[str, Any]:
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    if fenced:
        body = fenced.group(1)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedSummary(f"not JSON ({exc})") from None
    if not isinstance(value, Mapping):
        raise MalformedSummary("not a JSON object")
    return value


def _text(value: Any, what: str, max_words: int, min_words: int = 1) -> str:
    if not isinstance(value, str):
        raise MalformedSummary(f"{what} is not a string")
    words = value.split()
    if len(words) < min_words:
        raise MalformedSummary(f"{what} is empty or too short")
    if len(words) > max_words * 3 // 2:  # some slack over what was asked
        raise MalformedSummary(f"{what} has {len(words)} words, asked for {max_words} at most")
    return " ".join(words)


def _list(value: Any, what: str, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedSummary(f"{what} is not a list")
    if len(value) > max_items:
        raise MalformedSummary(f"{what} has {len(value)} items, at most {max_items} allowed")
    return value


def _known(page_id: Any, allowed: Collection[str], what: str) -> str:
    if not isinstance(page_id, str) or page_id not in allowed:
        raise MalformedSummary(f"{what} names {page_id!r}, which was not asked about")
    return page_id


def _claim(value: Any, sources: Collection[str]) -> tuple[str, str]:
    if not isinstance(value, Mapping):
        raise MalformedSummary("a claim is not an object")
    page_id = _known(value.get("page"), sources, "a claim")
    return page_id, _text(value.get("text"), "a claim", CLAIM_WORDS, MIN_CLAIM_WORDS)


def _speaker(page: Page) -> str:
    who = str(page.extra.get("speaker") or page.role)
    said = page.extra.get("said")
    return f"{who} ({said})" if said else who


def _clipped(text: str, max_words: int) -> str:
    words = text.split()
    return " ".join(words[:max_words]) + (" …" if len(words) > max_words else "")
