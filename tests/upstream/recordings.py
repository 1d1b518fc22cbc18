"""Access to the recorded upstream exchanges in ../shared/recorded (never copied here)."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

RECORDED = Path(__file__).resolve().parents[2] / ".." / "shared" / "recorded"


@dataclass(frozen=True)
class Recording:
    name: str  # "<dir>/<file> #<interaction>"
    status: int
    content_type: str
    body: bytes

    @property
    def is_stream(self) -> bool:
        return "event-stream" in self.content_type


def _load() -> list[Recording]:
    if not RECORDED.is_dir():
        return []
    yaml = pytest.importorskip("yaml")
    out: list[Recording] = []
    for path in sorted(RECORDED.glob("*/*.yaml")):
        # spec/ holds no exchanges; responses/ holds the Responses API's, not chat completions.
        if path.parent.name in ("spec", "responses"):
            continue
        doc = yaml.safe_load(path.read_text())
        for i, interaction in enumerate(doc.get("interactions") or []):
            response = interaction["response"]
            headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
            content_type = "".join(headers.get("content-type") or [])
            body = _body(response, headers)
            name = f"{path.parent.name}/{path.name} #{i}"
            out.append(Recording(name, response["status"]["code"], content_type, body))
    return out


def _body(response: dict[str, Any], headers: dict[str, Any]) -> bytes:
    import json

    if "parsed_body" in response:
        return json.dumps(response["parsed_body"]).encode()
    raw = response["body"]["string"]
    data = raw if isinstance(raw, bytes) else raw.encode()
    if "gzip" in "".join(headers.get("content-encoding") or []):
        data = gzip.decompress(data)
    return data


_CACHE: list[Recording] | None = None


def recordings() -> list[Recording]:
    global _CACHE
    if _CACHE is None:
        _CACHE = _load()
    return _CACHE


def streamed() -> list[Recording]:
    return [r for r in recordings() if r.is_stream]


def by_name(prefix: str) -> list[Recording]:
    found = [r for r in recordings() if r.name.startswith(prefix)]
    if not found:
        pytest.skip(f"recording {prefix!r} not found in {RECORDED}")
    return found


def require_recordings() -> None:
    if not RECORDED.is_dir():
        pytest.skip(f"recorded exchanges not present at {RECORDED}")
