"""Counting a module's whole parses of request bodies (its `parse_json_object`): a request
read from the one before (proxy.http.resent) makes none."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest


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
