"""The compressed renderings of a page: level 1 (extractive), level 2 (abstract) and hints.

Everything here is pure and deterministic, made once at ingest:
- `reduce_text` (level 1) keeps the sentences that carry the page (first and last, ones with
  numbers, names, decisions, questions) up to about two fifths of the words, the outline
  of code blocks (definitions and top-level assignments), and for JSON a pruned copy
  (first keys and items, long strings cut) that is still JSON;
- `abstract_text` (level 2) is a few dozen tokens: the best one or two sentences, or a
  description of a JSON value or code block;
- `make_hint` is a short one-line handle for manifests and search results.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

LEVEL1_SHARE = 0.4
ABSTRACT_WORDS = 30
HINT_WORDS = 10
CODE_HEAD_LINES = 8
# Pages this short are already as small as an extract would be.
SHORT_WORDS = 40

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
_DIGIT = re.compile(r"\d")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}")
_STRONG = re.compile(
    r"\b(decid\w*|agreed|chose|chosen|settled|remember|important|must|never|always|"
    r"deadline|conclu\w*|prefer\w*)\b",
    re.I,
)
_WEAK = re.compile(
    r"\b(because|therefore|result\w*|error|fail\w*|total|summary|budget|due)\b", re.I
)
_SPACE = re.compile(r"\s+")
# The lines of a code outline: definitions at any depth, assignments at the top level.
_DEFINITION = re.compile(
    r"^\s*(?:(?:pub(?:\(\w+\))?|export|public|private|protected|static|async|default)\s+)*"
    r"(?:def|class|fn|func|function|interface|struct|enum|trait|impl|type)\s+[A-Za-z_]"
)
_TOP_ASSIGNMENT = re.compile(
    r"^(?:(?:export\s+)?(?:const|let|var|static)\s+)?[A-Za-z_][\w.]*\s*(?::[^=]{1,40})?=(?!=)"
)


def parse_json(text: str) -> Any | None:
    """The JSON value of `text` when the whole text is a JSON object or array."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        return orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None


def reduce_text(text: str) -> str:
    """Level 1: an extract that keeps what matters, a fraction of the original's size."""
    value = parse_json(text)
    if value is not None:
        reduced = orjson.dumps(prune_json(value)).decode()
        return reduced if len(reduced) < len(text) else _clip_words(text, LEVEL1_SHARE)
    if _word_count(text) <= SHORT_WORDS:
        return text
    parts: list[str] = []
    last = 0
    for fence in _FENCE.finditer(text):
        parts.append(_reduce_prose(text[last : fence.start()]))
        parts.append(_code_outline(fence.group()))
        last = fence.end()
    parts.append(_reduce_prose(text[last:]))
    return "\n".join(part for part in parts if part).strip()


def abstract_text(text: str, *, max_words: int = ABSTRACT_WORDS) -> str:
    """Level 2: a few dozen tokens that say what the page is about."""
    value = parse_json(text)
    if value is not None:
        return describe_json(value)
    fence = _FENCE.search(text)
    prose = _FENCE.sub(" ", text).strip()
    sentences = _sentences(prose)
    if not sentences and fence is not None:
        return _describe_code(fence.group())
    if not sentences:
        return ""
    chosen = [sentences[0]]
    if len(sentences) > 1 and _word_count(sentences[0]) < max_words // 2:
        best = max(range(1, len(sentences)), key=lambda i: (_score(sentences[i], i, 0), -i))
        chosen.append(sentences[best])
    abstract = _clip(" ".join(chosen), max_words)
    if fence is not None:
        abstract += " " + _describe_code(fence.group())
    return abstract


def make_hint(text: str, *, max_words: int = HINT_WORDS) -> str:
    """A one-line handle: the page's first words, or what its JSON/code is."""
    value = parse_json(text)
    if value is not None:
        return _clip(describe_json(value), max_words)
    prose = _FENCE.sub(" ", text).strip() or text
    return _clip(_SPACE.sub(" ", prose), max_words)


def prune_json(value: Any, depth: int = 0) -> Any:
    """A smaller JSON value of the same shape: first keys and items, long strings cut."""
    if isinstance(value, dict):
        keys = list(value)
        kept = {k: prune_json(value[k], depth + 1) for k in keys[:12]} if depth < 3 else {}
        if len(keys) > len(kept):
            kept["…"] = f"{len(keys) - len(kept)} more keys"
        return kept
    if isinstance(value, list):
        if depth >= 3:
            return [f"… {len(value)} items"] if value else []
        head = [prune_json(item, depth + 1) for item in value[:3]]
        if len(value) > 3:
            head.append(f"… {len(value) - 3} more items")
        return head
    if isinstance(value, str) and len(value) > 80:
        return value[:77] + "…"
    return value


def describe_json(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(str(k) for k in list(value)[:8])
        more = f" (+{len(value) - 8} more)" if len(value) > 8 else ""
        scalars = [f"{k}={v}" for k, v in value.items() if isinstance(v, str | int | float)]
        detail = "; " + _clip(", ".join(scalars[:4]), 16) if scalars else ""
        return f"JSON object with keys {keys}{more}{detail}"
    if isinstance(value, list):
        first = describe_json(value[0]) if value else ""
        return f"JSON list of {len(value)} items" + (
            f"; first: {_clip(first, 14)}" if first else ""
        )
    return f"JSON value {_clip(str(value), 12)}"


def _reduce_prose(text: str) -> str:
    sentences = _sentences(text)
    if not sentences:
        return ""
    total = sum(_word_count(s) for s in sentences)
    if total <= SHORT_WORDS // 2:
        return " ".join(sentences)
    budget = max(8, int(total * LEVEL1_SHARE))
    ranked = sorted(
        range(len(sentences)), key=lambda i: (-_score(sentences[i], i, len(sentences)), i)
    )
    keep: set[int] = set()
    used = 0
    # The opening sentence usually says what the page is about: keep it when it is short.
    if _word_count(sentences[0]) <= budget // 2:
        keep.add(0)
        used = _word_count(sentences[0])
    for i in ranked:
        if i in keep:
            continue
        words = _word_count(sentences[i])
        if used and used + words > budget:
            continue
        keep.add(i)
        used += min(words, budget)
        if used >= budget:
            break
    out: list[str] = []
    previous = -1
    for i in sorted(keep):
        sentence = _clip(sentences[i], budget)
        out.append(sentence if previous in (-1, i - 1) else "… " + sentence)
        previous = i
    if previous != len(sentences) - 1:
        out.append("…")
    return " ".join(out)


def _score(sentence: str, index: int, count: int) -> float:
    score = 0.0
    if index == 0:
        score += 2.5
    elif count and index == count - 1:
        score += 1.0
    if _DIGIT.search(sentence):
        score += 1.0
    if _NAME.search(sentence):
        score += 0.7
    score += 2.0 * min(2, len(_STRONG.findall(sentence)))
    score += 0.6 * min(2, len(_WEAK.findall(sentence)))
    if sentence.endswith("?"):
        score += 0.8
    words = _word_count(sentence)
    if words < 4:
        score -= 1.0
    elif words > 60:
        score -= 0.5
    return score


def _sentences(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    # Line-oriented text (logs, lists) is split by line; prose by sentence ends.
    if len(lines) > 3 and sum(len(line) for line in lines) / len(lines) < 100:
        return lines
    joined = _SPACE.sub(" ", " ".join(lines))
    return [s.strip() for s in _SENTENCE_END.split(joined) if s.strip()]


def _code_outline(block: str) -> str:
    """A long code block as its outline: the definition lines (functions, classes, types)
    and top-level assignments (the constants one asks about later), bodies left out; at
    most LEVEL1_SHARE of the lines. Code with no such lines keeps its head."""
    lines = block.splitlines()
    body = lines[1:-1]
    if len(body) <= CODE_HEAD_LINES:
        return block
    room = max(CODE_HEAD_LINES, int(len(body) * LEVEL1_SHARE))
    kept = [i for i, line in enumerate(body) if _is_outline(line)][:room]
    if not kept:
        kept = list(range(CODE_HEAD_LINES))
    out = [lines[0]]
    previous = -1
    for i in kept:
        if i != previous + 1:
            out.append("…")
        out.append(body[i])
        previous = i
    rest = len(body) - len(kept)
    out += [f"… ({rest} more lines)", lines[-1]]
    return "\n".join(out)


def _is_outline(line: str) -> bool:
    if _DEFINITION.match(line):
        return True
    return not line[:1].isspace() and _TOP_ASSIGNMENT.match(line) is not None


def _describe_code(block: str) -> str:
    lines = block.splitlines()
    language = lines[0].strip("`").strip() or "code"
    body = [line.strip() for line in lines[1:-1] if line.strip()]
    first = _clip(body[0], 8) if body else ""
    return f"[{language} block, {len(lines) - 2} lines: {first}]"


def _clip(text: str, max_words: int) -> str:
    words = text.split()
    if len(words) <= max_words:
        return " ".join(words)
    return " ".join(words[:max_words]) + " …"


def _clip_words(text: str, share: float) -> str:
    words = text.split()
    return _clip(text, max(8, int(len(words) * share)))


def _word_count(text: str) -> int:
    return len(text.split())
