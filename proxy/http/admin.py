"""The admin API (`/admin/api/...`, JSON) and the inspector page (`/admin/`), present only
when `admin.api_key` is set (DESIGN.md section 4).

Every API call needs `Authorization: Bearer <admin.api_key>`, compared in constant time;
a missing or wrong key is a 401 in OpenAI's error shape, and so is every error here: all
API answers are JSON. The admin key is no tenant's key: a `/v1/*` request carrying it in
any credential header is refused (`refuses_admin_key`), so no tenant ever holds it. The
page itself is static (proxy/admin/static, shipped as package data): it holds no data and
asks for the key, which its scripts send with each call.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from proxy.admin import reads
from proxy.admin.replay import replay
from proxy.config import AdminSettings
from proxy.errors import ProxyError
from proxy.http.state import app_state
from proxy.store.base import PageStore

JSON = "application/json"
# Every API answer, errors included (they name conversations): never cached, never sniffed.
_API_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
# The page's files and their types; nothing else is served from the folder.
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "inspector.js": "text/javascript; charset=utf-8",
    "inspector.css": "text/css; charset=utf-8",
}
# The page loads only its own files and talks only to this origin.
_PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
_KEY_HEADERS = ("api-key", "x-api-key")
# What separates the parts of a credential header's value: a scheme and its token, a Basic
# credential's user and password.
_CREDENTIAL_PARTS = re.compile(r"[\s:]+")
_DIGITS = re.compile(r"-?[0-9]+")

Handler = Callable[[Request, PageStore], Awaitable[Any]]


def unauthorized(message: str) -> ProxyError:
    return ProxyError(message, status_code=401, error_type="authentication_error",
                      code="invalid_admin_key", headers={"www-authenticate": "Bearer"})  # fmt: skip


def _same(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode(), key.encode())


def check_admin_key(headers: Mapping[str, str], key: str) -> None:
    """Raise 401 unless `Authorization: Bearer <key>` is sent."""
    auth = headers.get("authorization")
    if auth is None or not auth.strip():
        raise unauthorized("The admin API needs Authorization: Bearer <admin.api_key>.")
    scheme, _, token = auth.strip().partition(" ")
    if scheme.lower() != "bearer" or not _same(token.strip(), key):
        raise unauthorized("Wrong admin key.")


def refuses_admin_key(headers: Headers, settings: AdminSettings) -> None:
    """A `/v1/*` request carrying the admin key as its credential is refused: the admin
    key must never become a tenant's key, nor reach the upstream. Every value of every
    credential header is read, whatever its scheme, a Basic credential decoded too."""
    key = settings.api_key
    if not key:
        return
    for name in ("authorization", *_KEY_HEADERS):
        for value in headers.getlist(name):
            if any(_same(part, key) for part in _credential_parts(value)):
                raise ProxyError("The admin key is not an API key for /v1 requests.",
                                 status_code=401, error_type="authentication_error",
                                 code="admin_key_refused")  # fmt: skip


def _credential_parts(value: str) -> list[str]:
    """The words of a credential header's value, and of its Basic credential's decoding."""
    parts = [part for part in _CREDENTIAL_PARTS.split(value) if part]
    if len(parts) >= 2 and parts[0].lower() == "basic":
        try:
            decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return parts
        parts.extend(part for part in _CREDENTIAL_PARTS.split(decoded) if part)
    return parts


def admin_routes(settings: AdminSettings) -> list[BaseRoute]:
    """The routes, or none when the admin API is off."""
    if not settings.api_key:
        return []
    api = [
        ("/admin/api/tenants", _tenants),
        ("/admin/api/conversations", _conversations),
        ("/admin/api/conversations/{id}", _conversation),
        ("/admin/api/conversations/{id}/pages", _pages),
        ("/admin/api/conversations/{id}/pages/{page_id}", _page),
        ("/admin/api/conversations/{id}/search", _search),
        ("/admin/api/conversations/{id}/tree", _tree),
        ("/admin/api/conversations/{id}/turns", _turns),
        ("/admin/api/conversations/{id}/turns/{n}", _turn),
    ]
    routes: list[BaseRoute] = [Route(path, _guarded(handler), methods=["GET"])
                               for path, handler in api]  # fmt: skip
    routes.append(Route("/admin/api/{rest:path}", _guarded(_unknown), methods=["GET"]))
    routes.append(Route("/admin", _redirect, methods=["GET"]))
    routes.append(Route("/admin/", _index, methods=["GET"]))
    routes.append(Route("/admin/static/{name}", _static, methods=["GET"]))
    return routes


def _guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        state = app_state(request)
        try:
            check_admin_key(request.headers, state.settings.admin.api_key)
            body = await handler(request, state.store)
        except ProxyError as exc:
            exc.headers = {**exc.headers, **_API_HEADERS}
            raise
        return Response(orjson.dumps(body), media_type=JSON, headers=_API_HEADERS)

    return endpoint


async def _unknown(request: Request, store: PageStore) -> Any:
    raise reads.not_found(f"Unknown admin API path {request.url.path}.")


def _int(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    return _integer(raw, name, f"{name} must be an integer")




def _integer(raw: str, name: str, what: str) -> int:
    """ASCII digits only: `int()` would also read " 1", "1_0" and other scripts' digits."""
    if not _DIGITS.fullmatch(raw):
        raise reads.bad_request(what, name)
    value = int(raw)
    if not -reads.LARGEST <= value <= reads.LARGEST:
        raise reads.bad_request(f"{name} is out of range", name)
    return value


async def _found(request: Request, store: PageStore) -> reads.Found:
    tenant = request.query_params.get("tenant") or None
    return await reads.find(store, request.path_params["id"], tenant)


async def _tenants(request: Request, store: PageStore) -> Any:
    return await reads.tenants(store)


async def _conversations(request: Request, store: PageStore) -> Any:
    params = request.query_params
    return await reads.conversations(
        store, tenant=params.get("tenant") or None, session=params.get("session") or None,
        before=params.get("before") or None, limit=_int(request, "limit"),
    )


async def _conversation(request: Request, store: PageStore) -> Any:
    return await reads.conversation(store, await _found(request, store))


async def _pages(request: Request, store: PageStore) -> Any:
    return await reads.pages(store, await _found(request, store),
                             start=_int(request, "from", 0) or 0, limit=_int(request, "limit"))


async def _page(request: Request, store: PageStore) -> Any:
    return await reads.page(store, await _found(request, store), request.path_params["page_id"])


async def _search(request: Request, store: PageStore) -> Any:
    params = request.query_params
    mode = params.get("mode") or app_state(request).settings.vm.mode
    if mode not in ("strict", "relaxed", "passive"):
        mode = "strict"
    return await reads.search(
        store, await _found(request, store), params.get("q") or "",
        limit=_int(request, "limit", 5), mode=mode,
        modality=params.get("modality") or None,
    )


async def _tree(request: Request, store: PageStore) -> Any:
    return await reads.tree(store, await _found(request, store))


async def _turns(request: Request, store: PageStore) -> Any:
    return await reads.timeline(store, await _found(request, store),
                                first=_int(request, "from"), limit=_int(request, "limit"))


async def _turn(request: Request, store: PageStore) -> Any:
    turn = _integer(request.path_params["n"], "n", "the turn must be an integer (-1: the latest)")
    return await replay(store, await _found(request, store), turn,
                        request=_int(request, "request", 0) or 0)


async def _redirect(request: Request) -> Response:
    return Response(status_code=308, headers={"location": "/admin/"})


async def _index(request: Request) -> Response:
    return _file("index.html")


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        raise reads.not_found(f"No file {name!r}.")
    return _file(name)


def _file(name: str) -> Response:
    data = resources.files("proxy.admin").joinpath("static", name).read_bytes()
    return Response(data, media_type=STATIC[name], headers=_PAGE_HEADERS)
