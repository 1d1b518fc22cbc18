"""Per-request decisions taken before any memory work: the mode, the tenant, the session."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.errors import InvalidRequest
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
    """The tenant: a keyed hash of the client's bearer key (never the key), else `default`."""
    key = bearer_key(headers)
    return tenant_id(secret, key, default)


def bearer_key(headers: Mapping[str, str]) -> str | None:
    auth = _header(headers, "authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    azure = _header(headers, "api-key")
    return azure.strip() if azure and azure.strip() else None


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
