"""Token counts for the benchmark: the proxy's own counter (`proxy.tokens`, the o200k rank
file shipped in the package), so the benchmark's budgets and the proxy's
`X-VM-Prompt-Tokens` agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy.tokens import counter_for_model

MODEL = "gpt-4o-mini"
_COUNTER = counter_for_model(MODEL)


def count_text(text: str) -> int:
    return _COUNTER.text(text)


def count_message(message: dict[str, Any]) -> int:
    return int(_COUNTER.message(message))


def count_tools(tools: Sequence[dict[str, Any]] | None) -> int:
    return int(_COUNTER.tools(list(tools or []), has_system=True))


def count_prompt(
    messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None
) -> int:
    """Prompt tokens of a chat request: every message, the tool schemas, and the tokens
    that prime the reply."""
    return int(_COUNTER.request({"messages": list(messages), "tools": list(tools or [])}))
