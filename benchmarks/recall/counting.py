"""Token counts for the benchmark, with the o200k encoding shipped in the proxy package.

Uses the proxy's own counter (`proxy.tokens`) when it is importable, so the benchmark's
budgets and the proxy's `X-VM-Prompt-Tokens` agree; otherwise counts with the same rank file
through tiktoken, with OpenAI's cookbook framing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken.load import load_tiktoken_bpe

_RANKS = Path(__file__).resolve().parents[2] / "proxy" / "data" / "o200k_base.tiktoken"
# tiktoken's own o200k pattern (tiktoken_ext.openai_public), which would otherwise download.
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
PER_MESSAGE = 4  # role and framing tokens of one chat message, as OpenAI's cookbook counts them


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.Encoding(
        name="o200k_base",
        pat_str=_O200K_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(_RANKS)),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    )


@lru_cache(maxsize=200_000)
def count_text(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


MODEL = "gpt-4o-mini"


@lru_cache(maxsize=1)
def _proxy_counter() -> Any:
    try:
        from proxy.tokens import counter_for_model
    except ImportError:
        return None
    return counter_for_model(MODEL)


def count_message(message: dict[str, Any]) -> int:
    counter = _proxy_counter()
    if counter is not None:
        return int(counter.message(message))
    total = PER_MESSAGE
    content = message.get("content")
    if isinstance(content, str):
        total += count_text(content)
    elif isinstance(content, list):
        total += sum(count_text(part.get("text", "")) for part in content if isinstance(part, dict))
    if message.get("tool_calls"):
        total += count_text(json.dumps(message["tool_calls"], sort_keys=True))
    return total


def count_tools(tools: Sequence[dict[str, Any]] | None) -> int:
    counter = _proxy_counter()
    if counter is not None:
        return int(counter.tools(list(tools or []), has_system=True))
    return count_text(json.dumps(list(tools), sort_keys=True)) if tools else 0


def count_prompt(
    messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None
) -> int:
    """Prompt tokens of a chat request: every message, the tool schemas, and the 3 tokens
    that prime the reply."""
    counter = _proxy_counter()
    if counter is not None:
        return int(counter.request({"messages": list(messages), "tools": list(tools or [])}))
    return sum(count_message(m) for m in messages) + count_tools(tools) + 3
