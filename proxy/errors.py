"""Every error the proxy answers with, and its OpenAI-shaped JSON.

    ProxyError                     (500 server_error)
    ├── InvalidRequest             (400 invalid_request_error, names the `param`)
    ├── PayloadTooLarge            (413 invalid_request_error)
    ├── UpstreamError              (502 the upstream could not be reached)
    │   ├── UpstreamTimeout        (504)
    │   └── UpstreamStatus         (the upstream's own 4xx/5xx, relayed with its status)
    └── VMError                    (500 a failure inside the virtual-memory path)
        └── MemoryUnavailable      (503 the page store failed; retry)

The store raises its own proxy.store.StoreError, which knows nothing of HTTP; the edge
answers it as MemoryUnavailable (or, with `vm.fail_open`, without memory at all).
"""

from __future__ import annotations

from typing import Any

import orjson


class ProxyError(Exception):
    status_code = 500
    error_type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        if status_code is not None:
            self.status_code = status_code
        if error_type is not None:
            self.error_type = error_type

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


class InvalidRequest(ProxyError):
    status_code = 400
    error_type = "invalid_request_error"


class PayloadTooLarge(ProxyError):
    status_code = 413
    error_type = "invalid_request_error"


class UpstreamError(ProxyError):
    status_code = 502
    error_type = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status_code = 504


class UpstreamStatus(UpstreamError):
    """The upstream answered with an error status; relayed with that status."""


class VMError(ProxyError):
    status_code = 500
    error_type = "server_error"


class MemoryUnavailable(VMError):
    status_code = 503


def normalise_error_body(status_code: int, body: bytes) -> dict[str, Any]:
    """Bring an upstream's error body into OpenAI's shape, keeping what it said.

    OpenRouter sends a numeric `code` and no `type`, Azure a string code and no `param`;
    clients (and the openai SDK) expect all four keys with `code` a string or null.
    """
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, str):
        # `{"error": "bad_credentials", "message": "Bad credentials"}`: the sentence is the
        # message and the short string its code.
        sentence = parsed.get("message") if isinstance(parsed, dict) else None
        if isinstance(sentence, str) and sentence:
            error = {"message": sentence, "code": error}
        else:
            error = {"message": error}
    if not isinstance(error, dict):
        text = body.decode("utf-8", "replace").strip()[:2000]
        error = {"message": text or f"upstream returned HTTP {status_code}"}
    out = dict(error)
    out["message"] = str(error.get("message") or f"upstream returned HTTP {status_code}")
    out["type"] = str(error.get("type") or _type_for_status(status_code))
    out["param"] = error.get("param")
    code = error.get("code")
    out["code"] = None if code is None else str(code)
    return {"error": out}


def _type_for_status(status_code: int) -> str:
    if status_code == 401:
        return "authentication_error"
    if status_code == 403:
        return "permission_error"
    if status_code == 404:
        return "not_found_error"
    if status_code == 429:
        return "rate_limit_error"
    if status_code < 500:
        return "invalid_request_error"
    return "server_error"
