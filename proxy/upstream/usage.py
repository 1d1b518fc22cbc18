"""Token usage: find it wherever an upstream put it, and add it up over loop iterations.

Placements seen (../shared/recorded/SSE_FORMAT.md section 6): top-level `usage` (OpenAI's
trailing chunk with `choices: []`, DeepSeek/Mistral/Moonshot on the finish chunk,
OpenRouter on a trailing chunk that still has choices, Perplexity cumulatively on every
chunk), `x_groq.usage` (Groq, sometimes duplicated at top level), and `usage` inside a
choice. `usage: null` means "none here".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["OPENAI_USAGE_ORDER", "Usage", "add_usage", "extract_usage", "openai_usage",
           "sum_usage"]

Usage = dict[str, Any]

OPENAI_USAGE_ORDER = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
)


def extract_usage(obj: Mapping[str, Any]) -> Usage | None:
    """The usage carried by a chunk or a response body, or None.

    Top-level `usage` wins over `x_groq.usage` (Groq may send both, equal: taking one
    avoids counting twice), which wins over a per-choice `usage`. The returned dict is
    the upstream's own object: copy before mutating.
    """
    usage = obj.get("usage")
    if isinstance(usage, dict) and usage:
        return usage
    vendor = obj.get("x_groq")
    if isinstance(vendor, dict):
        usage = vendor.get("usage")
        if isinstance(usage, dict) and usage:
            return usage
    choices = obj.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict):
                usage = choice.get("usage")
                if isinstance(usage, dict) and usage:
                    return usage
    return None


def add_usage(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> Usage | None:
    """The sum of two usages, as a new dict; None only if both are None.

    Numbers are summed (also floats such as Groq's timings or OpenRouter's cost), nested
    dicts (`*_details`) recursively; for anything else (strings, bools, lists) the first
    value is kept. Keys of either side are kept, in first-seen order. A side that lacks
    `total_tokens` but has prompt and completion counts gets it filled in first, so the
    sum stays consistent.
    """
    if a is None:
        return None if b is None else _with_total(b)
    if b is None:
        return _with_total(a)
    return _merge(_with_total(a), _with_total(b))


def sum_usage(usages: Iterable[Mapping[str, Any] | None]) -> Usage | None:
    total: Usage | None = None
    for usage in usages:
        total = add_usage(total, usage)
    return total


def openai_usage(usage: Mapping[str, Any]) -> Usage:
    """A copy in OpenAI's key order (prompt, completion, total, details), the rest after."""
    out: Usage = {key: usage[key] for key in OPENAI_USAGE_ORDER if key in usage}
    for key, value in usage.items():
        if key not in out:
            out[key] = value
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _with_total(usage: Mapping[str, Any]) -> Usage:
    out = _copy(usage)
    if out.get("total_tokens") is None:
        prompt, completion = out.get("prompt_tokens"), out.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            out["total_tokens"] = prompt + completion
    return out


def _copy(value: Mapping[str, Any]) -> Usage:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in value.items()}


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> Usage:
    out: Usage = {}
    for key, left in a.items():
        if key not in b:
            out[key] = left
            continue
        right = b[key]
        if left is None:
            out[key] = right
        elif right is None:
            out[key] = left
        elif _is_number(left) and _is_number(right):
            out[key] = left + right
        elif isinstance(left, dict) and isinstance(right, dict):
            out[key] = _merge(left, right)
        else:
            out[key] = left
    for key, right in b.items():
        if key not in a:
            out[key] = right
    return out
