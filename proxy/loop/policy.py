"""Per-request decisions taken before any memory work: the mode, the tenant, the session."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from proxy.errors import InvalidRequest, ProxyError
from proxy.vm.identity import tenant_id

MODES = ("strict", "relaxed", "passive", "off")
SESSION_HEADER = "x-vm-session"
MODE_HEADER = "x-vm-mode"
_MAX_SESSION_NAME = 200
# What request_mode reads of a body when only the headers are known (memory_off).
_NO_BODY: Mapping[str, Any] = {}


def request_mode(configured: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> str:
    """The mode this request runs in.

    `X-VM-Mode` overrides the configured mode. A request the model could not answer with
    memory tools runs passive: `tool_choice` "none" or naming one function (the client
    forbids other calls), or one whose answer is relayed as the upstream gives it
    (`relayed_whole`).
    """
    mode = configured
    asked = _header(headers, MODE_HEADER)
    if asked is not None:
        mode = asked.strip().lower()
        if mode not in MODES:
            raise InvalidRequest(
                f"X-VM-Mode must be one of {', '.join(MODES)}; got {asked!r}.",
                param="X-VM-Mode",
                code="invalid_vm_mode",
            )
    if mode in ("off", "passive"):
        return mode
    choice = body.get("tool_choice")
    if choice == "none" or isinstance(choice, dict):
        return "passive"
    if relayed_whole(body):
        return "passive"
    return mode


def memory_off(configured: str, headers: Mapping[str, str]) -> bool:
    """Whether the request runs in mode off, known from the headers alone (request_mode
    reads the body only for the other modes): its body is relayed as it came. An invalid
    `X-VM-Mode` is not off: it is refused once the body is checked, as for every route."""
    try:
        return request_mode(configured, headers, _NO_BODY) == "off"
    except InvalidRequest:
        return False


def relayed_whole(body: Mapping[str, Any]) -> bool:
    """A memory turn whose answer goes to the client as the upstream gives it, after one
    call with the packed prompt and no memory tools: several choices (`n` > 1: one fault
    loop cannot serve them), legacy `functions` (OpenAI takes them or `tools`, not both;
    their answer is a `function_call`), `prediction` (not taken with tools) and an audio
    answer (`modalities`; its `audio` deltas are the answer)."""
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        return True
    functions = body.get("functions")
    if (isinstance(functions, list) and functions) or body.get("prediction") is not None:
        return True
    modalities = body.get("modalities")
    return isinstance(modalities, list) and "audio" in modalities


def request_tenant(headers: Mapping[str, str], secret: str, default: str) -> str:
    """The tenant: a keyed hash of the client's credentials (never the credentials), else
    `default` when the request carries none."""
    return _tenant(*_credential_headers(headers), secret, default)


@functools.lru_cache(maxsize=4096)
def _tenant(
    auth: str | None, api_key: str | None, x_api_key: str | None, secret: str, default: str
) -> str:
    """Remembered: a client sends the same credentials with every request, and hashing
    them is most of what finding its tenant costs."""
    return tenant_id(secret, _credential(auth, api_key, x_api_key), default)


# Headers that carry a key, besides Authorization: Azure's and Anthropic's.
KEY_HEADERS = ("api-key", "x-api-key")
_CREDENTIAL_HEADERS = (b"authorization", b"api-key", b"x-api-key")


def credential(headers: Mapping[str, str]) -> str | None:
    """Every credential the request carries, as one string to hash; None without any.

    Each form the proxy forwards counts (DESIGN.md section 4): `Authorization` in any
    scheme, `api-key` and `x-api-key`. A bearer key and the same key under `api-key` or
    `x-api-key` are one credential (and keep the tenant the bearer key always had); any
    other scheme (Basic, ...) is kept apart from keys by a prefix no header value can hold,
    and several different credentials are hashed together, so that two clients differing
    in any of them never share a tenant.
    """
    return _credential(*_credential_headers(headers))


def _credential_headers(headers: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """The first value of Authorization, api-key and x-api-key: of a request's raw headers
    in one pass (Starlette's lookups walk them once per name)."""
    raw = getattr(headers, "raw", None)
    if raw is None:
        api_key, x_api_key = (_header(headers, name) for name in KEY_HEADERS)
        return _header(headers, "authorization"), api_key, x_api_key
    found: list[str | None] = [None, None, None]
    for name, value in raw:
        if name in _CREDENTIAL_HEADERS:
            index = _CREDENTIAL_HEADERS.index(name)
            if found[index] is None:
                found[index] = value.decode("latin-1")
    return found[0], found[1], found[2]


def _credential(auth: str | None, *keys: str | None) -> str | None:
    found: list[str] = []
    if auth is not None and auth.strip():
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer":
            if token.strip():
                found.append(token.strip())
        else:
            found.append(f"\x00{scheme.lower()} {token.strip()}")
    for value in keys:
        if value is not None and value.strip():
            found.append(value.strip())
    distinct = sorted(set(found))
    if not distinct:
        return None
    return distinct[0] if len(distinct) == 1 else "\x01".join(distinct)


def refuse_anonymous() -> ProxyError:
    return ProxyError(
        "This proxy requires a credential (Authorization, api-key or x-api-key) "
        "(tenant.require_credential).",
        status_code=401,
        error_type="authentication_error",
        code="missing_credential",
    )


def session_name(headers: Mapping[str, str]) -> str | None:
    name = _header(headers, SESSION_HEADER)
    if name is None:
        return None
    name = name.strip()
    if not name or len(name) > _MAX_SESSION_NAME or not name.isprintable():
        raise InvalidRequest(
            f"X-VM-Session must be 1 to {_MAX_SESSION_NAME} printable characters.",
            param="X-VM-Session",
            code="invalid_vm_session",
        )
    return name


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The first value of a header. Starlette's `Headers.get` raises and catches a
    KeyError for an absent header, on every request; `getlist` does not."""
    getlist = getattr(headers, "getlist", None)
    if getlist is None:
        return headers.get(name)
    values = getlist(name)
    return str(values[0]) if values else None
