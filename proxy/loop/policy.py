"""Per-request decisions taken before any memory work: the mode, the tenant, the session."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.errors import InvalidRequest, ProxyError
from proxy.vm.identity import tenant_id

MODES = ("strict", "relaxed", "passive", "off")
SESSION_HEADER = "x-vm-session"
MODE_HEADER = "x-vm-mode"
_MAX_SESSION_NAME = 200


def request_mode(configured: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> str:
    """The mode this request runs in.

    `X-VM-Mode` overrides the configured mode. A request the model could not answer with
    memory tools runs passive: `tool_choice` "none" or naming one function (the client
    forbids other calls), or several choices (`n` > 1: one fault loop cannot serve them).
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
    if several_choices(body):
        return "passive"
    return mode


def several_choices(body: Mapping[str, Any]) -> bool:
    """`n` > 1: the request asks for more than one choice."""
    n = body.get("n")
    return isinstance(n, int) and n > 1


def request_tenant(headers: Mapping[str, str], secret: str, default: str) -> str:
    """The tenant: a keyed hash of the client's credentials (never the credentials), else
    `default` when the request carries none."""
    return tenant_id(secret, credential(headers), default)


# Headers that carry a key, besides Authorization: Azure's and Anthropic's.
KEY_HEADERS = ("api-key", "x-api-key")


def credential(headers: Mapping[str, str]) -> str | None:
    """Every credential the request carries, as one string to hash; None without any.

    Each form the proxy forwards counts (DESIGN.md section 4): `Authorization` in any
    scheme, `api-key` and `x-api-key`. A bearer key and the same key under `api-key` or
    `x-api-key` are one credential (and keep the tenant the bearer key always had); any
    other scheme (Basic, ...) is kept apart from keys by a prefix no header value can hold,
    and several different credentials are hashed together, so that two clients differing
    in any of them never share a tenant.
    """
    found: list[str] = []
    auth = _header(headers, "authorization")
    if auth is not None and auth.strip():
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer":
            if token.strip():
                found.append(token.strip())
        else:
            found.append(f"\x00{scheme.lower()} {token.strip()}")
    for name in KEY_HEADERS:
        value = _header(headers, name)
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
