"""The recorded Responses API exchanges in ../shared/recorded/responses (never copied here).

Each `Exchange` is one upstream call: the request body when it was recorded, and the reply
as the upstream sent it (status, content type, body bytes). vercel-ai's `.chunks.txt` keep
only each event's JSON: they are framed again as OpenAI frames events (`event:` line,
`data:` line, blank line), one stream per `sequence_number` 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.upstream.recordings import RECORDED

FOLDER = RECORDED / "responses"


@dataclass(frozen=True)
class Exchange:
    name: str  # "<file> #<n>"
    method: str
    path: str  # after /v1 (GET resumes keep their own)
    request: dict[str, Any] | None
    status: int
    content_type: str
    body: bytes

    @property
    def is_stream(self) -> bool:
        return "event-stream" in self.content_type


def _yaml_exchanges(path: Path) -> list[Exchange]:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(path.read_text())
    out: list[Exchange] = []
    for i, interaction in enumerate(doc.get("interactions") or []):
        request, response = interaction["request"], interaction["response"]
        if "parsed_body" in request:
            body: Any = request["parsed_body"]
        else:
            raw = request.get("body")
            body = json.loads(raw) if raw else None
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        content_type = "".join(headers.get("content-type") or ["application/json"])
        if "parsed_body" in response:
            data = json.dumps(response["parsed_body"]).encode()
        else:
            raw = response["body"]["string"]
            data = raw if isinstance(raw, bytes) else raw.encode()
        uri = str(request["uri"])
        tail = uri[uri.index("/responses"):]
        out.append(Exchange(f"{path.name} #{i}", request["method"], tail, body,
                            response["status"]["code"], content_type, data))
    return out


def _chunk_exchanges(path: Path) -> list[Exchange]:
    streams: list[list[str]] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        if json.loads(line).get("sequence_number") == 0 or not streams:
            streams.append([])
        streams[-1].append(line)
    out = []
    for i, lines in enumerate(streams):
        framed = "".join(f"event: {json.loads(line)['type']}\ndata: {line}\n\n" for line in lines)
        out.append(Exchange(f"{path.name} #{i}", "POST", "/responses", None, 200,
                            "text/event-stream; charset=utf-8", framed.encode()))
    return out


def _json_exchange(path: Path) -> Exchange:
    body = path.read_bytes()
    status = 400 if json.loads(body).get("error") else 200
    return Exchange(f"{path.name} #0", "POST", "/responses", None, status,
                    "application/json", body)


def exchanges() -> list[Exchange]:
    if not FOLDER.is_dir():
        return []
    out: list[Exchange] = []
    for path in sorted(FOLDER.iterdir()):
        if path.name.endswith(".yaml"):
            out += _yaml_exchanges(path)
        elif path.name.endswith(".chunks.txt"):
            out += _chunk_exchanges(path)
        elif path.suffix == ".json":
            out.append(_json_exchange(path))
    return out


def files() -> list[str]:
    return sorted({e.name.split(" #")[0] for e in exchanges()})


def of_file(name: str) -> list[Exchange]:
    found = [e for e in exchanges() if e.name.split(" #")[0] == name]
    if not found:
        pytest.skip(f"recording {name!r} not found in {FOLDER}")
    return found


def require() -> None:
    if not FOLDER.is_dir():
        pytest.skip(f"recorded Responses exchanges not present at {FOLDER}")
