"""Hypothesis strategies for a Responses request's input as a client resends its history:
plain `{"role", "content"}` messages among other items, some of them near-misses of the
plain shape (what a fast path must leave to the item-by-item one)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

PLAIN_MESSAGES: SearchStrategy[dict[str, Any]] = st.builds(
    lambda role, text: {"role": role, "content": text},
    st.sampled_from(["user", "assistant", "system", "developer"]),
    st.sampled_from(["", "a", "b"]),
)


def other_items(answer: dict[str, Any], *more: Any) -> SearchStrategy[Any]:
    """`more`, `answer` (a model's message item) and the near-misses: `answer` without its
    id or with an empty text, a typed user message, a named assistant one."""
    return st.sampled_from([
        *more, answer,
        {k: v for k, v in answer.items() if k != "id"},
        {**answer, "content": [{"type": "output_text", "text": ""}]},
        {"type": "message", "role": "user", "content": "typed"},
        {"role": "assistant", "content": "named", "name": "x"},
    ])
