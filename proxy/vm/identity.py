"""Who is asking and which messages the store already has: tenant ids and chain hashes.

A tenant id is a keyed hash of the client's bearer key (never the key itself). A message's
chain hash is `h_i = H(h_{i-1}, role, canonical content)`, rooted in the tenant, so equal
histories of one tenant hash equally and nothing matches across tenants (DESIGN.md section 2).

Canonical content covers `content` (a string, or the parts as sorted-key JSON), `name`,
`tool_calls` (id, function name, arguments as sent) and `tool_call_id`. Content `null` and `""`
hash alike, since clients resend one for the other. Every field is length-prefixed, so no
choice of text can make two different messages hash alike by shifting bytes between fields.
The common case, a plain string, is hashed from its UTF-8 bytes without any JSON work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from proxy.vm.bounds import SLICE_CHARS, encoded_slices

_DIGEST = 16
_TENANT_PERSON = b"vm-proxy.tenant"
_ROOT_PERSON = b"vm-proxy.root"
_CHAIN_PERSON = b"vm-proxy.chain"


def _key(secret: str) -> bytes:
    raw = secret.encode()
    # blake2b keys are at most 64 bytes; a longer secret is first reduced to 64.
    return raw if len(raw) <= 64 else hashlib.blake2b(raw).digest()


def tenant_id(secret: str, api_key: str | None, default: str) -> str:
    """`t_` + a keyed hash of the bearer key; `default` when the request carries none."""
    if not api_key:
        return default
    digest = hashlib.blake2b(
        api_key.encode(), key=_key(secret), digest_size=_DIGEST, person=_TENANT_PERSON
    )
    return "t_" + digest.hexdigest()


def chain_root(tenant: str) -> bytes:
    return hashlib.blake2b(tenant.encode(), digest_size=_DIGEST, person=_ROOT_PERSON).digest()


def chain_hashes(
    tenant: str, messages: Sequence[Mapping[str, Any]], *, prev: str | None = None
) -> list[str]:
    """Chain hash (hex) of each message; `prev` continues a chain (hash of the message before
    `messages[0]`), else the chain starts at the tenant's root."""
    state = bytes.fromhex(prev) if prev else chain_root(tenant)
    out: list[str] = []
    blake2b = hashlib.blake2b
    for message in messages:
        h = blake2b(state, digest_size=_DIGEST, person=_CHAIN_PERSON)
        _feed(h, message)
        state = h.digest()
        out.append(state.hex())
    return out


def _feed(h: Any, message: Mapping[str, Any]) -> None:
    _field(h, b"r", str(message.get("role") or "").encode())
    content = message.get("content")
    if isinstance(content, str) and len(content) <= SLICE_CHARS:
        _field(h, b"s", content.encode())
    elif isinstance(content, str):
        # In slices: a 50 MB text's encode would hold the GIL throughout (proxy.vm.bounds).
        pieces = list(encoded_slices(content))
        h.update(b"s" + sum(map(len, pieces)).to_bytes(8, "little"))
        for piece in pieces:
            h.update(piece)
    elif content is not None:
        _field(h, b"j", orjson.dumps(content, option=orjson.OPT_SORT_KEYS))
    else:
        _field(h, b"s", b"")
    name = message.get("name")
    if name:
        _field(h, b"n", str(name).encode())
    call_id = message.get("tool_call_id")
    if call_id is not None:
        _field(h, b"i", str(call_id).encode())
    calls = message.get("tool_calls")
    if calls:
        for call in calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping):
                function = {}
            arguments = function.get("arguments")
            if not isinstance(arguments, str):
                arguments = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS).decode()
            _field(h, b"c", str(call.get("id") or "").encode())
            _field(h, b"f", str(function.get("name") or "").encode())
            _field(h, b"a", arguments.encode())


def _field(h: Any, tag: bytes, value: bytes) -> None:
    h.update(tag + len(value).to_bytes(8, "little"))
    h.update(value)
