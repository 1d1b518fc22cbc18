"""benchmarks/_servers.py's request bodies: a short chat resends its history turn by turn;
a one-shot chat is a new one-message chat every request."""

from __future__ import annotations

import json

from benchmarks import _servers


def _messages(connection: int, number: int, turns: int | None = None) -> list[dict[str, str]]:
    body = json.loads(_servers.short_chat_body(connection, number, turns))
    return body["messages"]


def test_a_short_chat_resends_its_history_then_starts_again() -> None:
    turns = [_messages(3, n) for n in range(_servers.SHORT_TURNS + 1)]
    for n, messages in enumerate(turns[:-1]):
        assert len(messages) == 2 * n + 1
        assert messages[:-1] == (turns[n - 1] + [messages[-2]] if n else [])
    assert len(turns[-1]) == 1 and turns[-1] != turns[0]  # a new chat


def test_oneshot_is_a_new_one_message_chat_every_request() -> None:
    firsts = [_messages(3, n, turns=1) for n in range(8)]
    assert all(len(m) == 1 and m[0]["role"] == "user" for m in firsts)
    assert len({m[0]["content"] for m in firsts}) == 8
