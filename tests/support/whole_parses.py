"""Counting a module's whole parses of request bodies (its `parse_json_object`): a request
read from the one before (proxy.http.resent) makes none."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import orjson
import pytest

from proxy.http import routes
from proxy.http.responses_validation import validate_responses_request


class WholeParses:
    """Counts the calls of `module.parse_json_object` from now on (the proxy's own; a test
    that parses for comparing calls the function it imported, not counted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
        self.count = 0
        self.parse = module.parse_json_object

        def counted(raw: bytes) -> dict[str, Any]:
            self.count += 1
            result: dict[str, Any] = self.parse(raw)
            return result

        monkeypatch.setattr(module, "parse_json_object", counted)


class ReadAsWhole:
    """Records what the routes hand on (each request's raw body, the body read, and for
    Responses the messages made of it) and, once the requests are over, checks each
    against a whole parse of its bytes: a body read from the request before
    (proxy.http.resent) must be what a whole parse gives, and stay so however the
    memory used it (`install`, then `check`)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, dict[str, Any], Any]] = []
        self._undo: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        chat, responses = routes.handle_chat, routes.handle_responses

        async def handle_chat(state: Any, request: Any, body: Any, raw: bytes) -> Any:
            self.seen.append(("chat", raw, body, None))
            return await chat(state, request, body, raw)

        async def handle_responses(state: Any, request: Any, body: Any, raw: bytes,
                                   messages: Any = None) -> Any:
            self.seen.append(("responses", raw, body, messages))
            return await responses(state, request, body, raw, messages)

        for name, replacement in (("handle_chat", handle_chat),
                                  ("handle_responses", handle_responses)):
            self._undo.append((routes, name, getattr(routes, name)))
            setattr(routes, name, replacement)

    def uninstall(self) -> None:
        while self._undo:
            module, name, original = self._undo.pop()
            setattr(module, name, original)

    def check(self) -> None:
        for dialect, raw, body, messages in self.seen:
            whole = orjson.loads(raw)
            assert body == whole, f"a {dialect} body is not what its bytes parse to"
            if dialect == "responses" and messages is not None:
                assert messages == validate_responses_request(whole), (
                    "a Responses request's messages are not its input's")
