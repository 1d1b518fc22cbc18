"""Settings: built-in defaults, then a TOML file, then `VM_PROXY_<SECTION>__<KEY>` variables,
then command-line flags. `config/default.toml` documents every key."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "VM_PROXY_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_content: bool = False
    resent_bodies_mb: float = Field(default=8.0, ge=0)
    shutdown_timeout_s: float = Field(default=30.0, ge=0)


class UpstreamSettings(_Section):
    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=1000, gt=0)
    responses: Literal["native", "chat"] = "native"

    @field_validator("base_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        return _http_url(value)


class StoreSettings(_Section):
    url: str = "sqlite:///./data/vm-proxy.db"
    retention_days: float = Field(default=0, ge=0)
    cache_pages: int = Field(default=20000, ge=0)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        schemes = ("memory://", "sqlite://", "postgresql://", "postgres://")
        if not value.startswith(schemes):
            raise ValueError("must start with memory://, sqlite:/// or postgresql://")
        return value


class TenantSettings(_Section):
    secret: str = "vm-proxy-local-secret"
    default: str = "default"
    require_credential: bool = False


class VMSettings(_Section):
    mode: Literal["strict", "relaxed", "passive", "off"] = "strict"
    context_budget: int = Field(default=8000, ge=512)
    activate_above: int = Field(default=6000, ge=0)
    reply_reserve_tokens: int = Field(default=1024, ge=0)
    max_faults_per_turn: int = Field(default=4, ge=0)
    max_fault_tokens_per_turn: int = Field(default=4000, ge=0)
    max_loop_iterations: int = Field(default=8, ge=1)
    pin_last_turns: int = Field(default=2, ge=0)
    segment_turns: int = Field(default=8, ge=2)
    manifest_max_entries: int = Field(default=5, ge=0)
    # Faults the packing keeps room for beside the loop's reserve (each a typical hit with
    # the turns around it; proxy.vm.packer.fault_room): the rest of the budget shows pages.
    expected_faults: int = Field(default=1, ge=1)
    window_share: float = Field(default=0.3, ge=0.0, le=0.9)
    recall_share: float = Field(default=1.0, ge=0.0, le=1.0)
    developer_role: Literal["auto", "developer", "system"] = "auto"
    turn_note: Literal["auto", "message", "leading"] = "auto"
    show_citations: bool = False
    fail_open: bool = True
    keepalive_s: float = Field(default=5.0, gt=0)
    summarizer: str = Field(default="off", min_length=1)
    summarizer_daily_tokens: int = Field(default=200_000, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _activate_within_budget(cls, data: Any) -> Any:
        """A request over the budget is never forwarded whole: `activate_above` is capped
        at `context_budget` (setting only the budget lower than the default threshold must
        not leave requests between the two forwarded over it)."""
        if not isinstance(data, Mapping):
            return data
        fields = cls.model_fields
        try:
            budget = int(data.get("context_budget", fields["context_budget"].default))
            above = int(data.get("activate_above", fields["activate_above"].default))
        except (TypeError, ValueError):
            return data  # the field validators name the bad value
        return {**data, "activate_above": budget} if above > budget else data


class EmbeddingsSettings(_Section):
    """Retrieval by meaning beside BM25 (issue 14). `auto` is decided by the upstream and
    `path` (`resolve_embeddings`): `onnx` when a model folder is given, `upstream` for
    OpenAI's own API, else `off`."""

    provider: Literal["auto", "off", "upstream", "onnx"] = "auto"
    model: str = "text-embedding-3-small"
    # Empty: upstream.base_url.
    base_url: str = ""
    # Empty: upstream.api_key when base_url is empty too, else the credential of the
    # request whose pages are embedded (held in memory only, never stored).
    api_key: str = ""
    path: str = ""
    batch_size: int = Field(default=32, ge=1, le=2048)
    timeout_s: float = Field(default=10.0, gt=0)
    # The query of a memory-active turn waits at most this long for its vector before the
    # turn searches by words alone.
    query_timeout_s: float = Field(default=2.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    # Conversations waiting for the background worker, at most; more are dropped (and
    # picked up again by their next memory-active turn).
    queue_size: int = Field(default=1000, ge=1)
    # Megabytes of vectors held in process for search (least recently used dropped).
    cache_mb: int = Field(default=256, ge=0)
    # The weight of the ranking by meaning against BM25's 1.0 in the rank fusion (with
    # neighbour_weight set, against BM25's hits and their neighbours together).
    fusion_weight: float = Field(default=0.8, ge=0.0, le=10.0)
    # The rank fusion's k (proxy.vm.fusion): a page at rank r of a ranking scores
    # weight / (k + r); a lower k lets the top of each ranking count for more.
    fusion_k: float = Field(default=10.0, gt=0.0, le=1000.0)
    # The weight of a third ranking in the prefetch's fusion: the messages next to BM25's
    # hits, in the hits' order (a question's answer, an answer's question); meaning's
    # weight grows by as much. 0 (the default): every hit brings its neighbours along, as
    # with BM25 alone. An experiment: +6 points on the recall benchmark's seed 7, where it
    # was tuned, but -0.8 to -1.5 on the held-out seeds 8 and 9 (README, Results).
    neighbour_weight: float = Field(default=0.0, ge=0.0, le=10.0)
    # Which of the prefetch's fused hits bring the messages beside them along (when
    # neighbour_weight is 0): `every_hit`, as with BM25 alone, or `word_hits`, those BM25
    # found (often the turn that asked, its answer beside it; a turn found by meaning
    # alone states the fact itself, and its neighbours would take room from other hits).
    # word_hits: +1.5 points on every row of the recall benchmark's held-out seeds 8 and 9.
    neighbours_of: Literal["every_hit", "word_hits"] = "word_hits"
    # With `word_hits`: which turns beside a word hit come along: `after` (the turn after
    # it alone: a question's answer; the turn before ranks on its own, as any hit) or
    # `both` (chosen on the recall benchmark's tuning seeds; README, Results).
    neighbour_sides: Literal["both", "after"] = "after"
    # The weight of each clause of the query (proxy.vm.query_parts: "How many years will I
    # be" / "when my friend Rachel gets married"), searched by meaning beside the whole
    # query (weight 1.0), the rankings fused into the ranking by meaning. 0: the whole
    # query alone (1.5 chosen on the recall benchmark; README, Results).
    clause_weight: float = Field(default=1.5, ge=0.0, le=10.0)

    @field_validator("base_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        return _http_url(value) if value else value


# An admin key shorter than this is refused: it guards every tenant's conversations.
MIN_ADMIN_KEY_CHARS = 16


class AdminSettings(_Section):
    # Empty: the admin API and the inspector page are off (their routes do not exist).
    api_key: str = ""

    @field_validator("api_key")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(f"must be empty (off) or at least {MIN_ADMIN_KEY_CHARS} characters")
        if value and not (value.isascii() and value.isprintable() and " " not in value):
            # A header carries it: one with spaces or other scripts' letters never matches.
            raise ValueError("must be printable ASCII without spaces")
        return value


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    store: StoreSettings = StoreSettings()
    tenant: TenantSettings = TenantSettings()
    vm: VMSettings = VMSettings()
    admin: AdminSettings = AdminSettings()
    embeddings: EmbeddingsSettings = EmbeddingsSettings()

    @model_validator(mode="after")
    def _admin_key_is_no_other_key(self) -> Settings:
        if self.admin.api_key and self.admin.api_key == self.upstream.api_key:
            raise ValueError("admin.api_key must differ from upstream.api_key")
        return self


# Upstreams known to take a `developer` message and a system-role message after the latest
# user message: OpenAI's own API. Open-model chat templates often take neither (issue 13).
_DEVELOPER_HOSTS = frozenset({"api.openai.com"})


def with_prompt_shape(settings: Settings) -> Settings:
    """`settings` with `auto` for `vm.developer_role` / `vm.turn_note` decided by the
    upstream: OpenAI's own API gets `developer` and `message` (the turn's block after the
    latest user message, which keeps the prompt's prefix); every other upstream gets
    `system` and `leading`: one system message, first, which every chat template with a
    system role accepts (vLLM's Llama, Hermes/Qwen, Gemma 3, Mistral, DeepSeek, ...)."""
    vm = settings.vm
    if "auto" not in (vm.developer_role, vm.turn_note):
        return settings
    openai = urlsplit(settings.upstream.base_url).hostname in _DEVELOPER_HOSTS
    shape: dict[str, str] = {}
    if vm.developer_role == "auto":
        shape["developer_role"] = "developer" if openai else "system"
    if vm.turn_note == "auto":
        shape["turn_note"] = "message" if openai else "leading"
    return settings.model_copy(update={"vm": vm.model_copy(update=shape)})


def resolve_embeddings(settings: Settings) -> Settings:
    """`settings` with `embeddings.provider = auto` decided and `embeddings.base_url` filled
    in: a model folder given (`path`) runs it locally; OpenAI's own API has
    `text-embedding-3-small` for every key that can chat; any other upstream may have no
    embeddings route at all, so there it is off until asked for."""
    emb = settings.embeddings
    update: dict[str, str] = {}
    if emb.provider == "auto":
        if emb.path:
            update["provider"] = "onnx"
        elif urlsplit(settings.upstream.base_url).hostname in _DEVELOPER_HOSTS:
            update["provider"] = "upstream"
        else:
            update["provider"] = "off"
    if not emb.base_url:
        # The upstream's own key goes only to the upstream's own URL.
        update["base_url"] = settings.upstream.base_url
        if not emb.api_key:
            update["api_key"] = settings.upstream.api_key
    if not update:
        return settings
    return settings.model_copy(update={"embeddings": emb.model_copy(update=update)})


class SettingsError(Exception):
    """A setting could not be read or is invalid; the message names it on one line."""


def load_settings(
    config_file: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    merged: dict[str, dict[str, Any]] = {}
    if config_file is not None:
        _merge(merged, _read_toml(Path(config_file)))
    _merge(merged, _from_environ(os.environ if environ is None else environ))
    if overrides:
        given = {k: {n: x for n, x in v.items() if x is not None} for k, v in overrides.items()}
        _merge(merged, given)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _http_url(value: str) -> str:
    """An absolute http(s) URL with a host and a valid port (refused at start-up, not on
    every request), without a trailing slash before its query."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError when out of range)
    except ValueError:
        raise ValueError("must be an http:// or https:// URL with a valid port") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return urlunsplit(parts._replace(scheme=parts.scheme.lower(), path=parts.path.rstrip("/")))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"config file {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: {exc}") from None


def _from_environ(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        section, sep, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if not sep or not key:
            raise SettingsError(f"{name}: expected {ENV_PREFIX}<SECTION>__<KEY>")
        found.setdefault(section, {})[key] = value
    return found


def _merge(into: dict[str, dict[str, Any]], layer: Mapping[str, Any]) -> None:
    for section, values in layer.items():
        if not isinstance(values, Mapping):
            raise SettingsError(f"[{section}] must be a table of settings")
        into.setdefault(section, {}).update(values)


# Settings whose values an error must not repeat.
_SECRETS = frozenset({"api_key", "secret"})


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"unknown setting {where}"
    value = first.get("input")
    secret = str(first["loc"][-1]) in _SECRETS
    shown = "" if isinstance(value, dict) or secret else f" (got {value!r})"
    return f"invalid setting {where}: {first['msg']}{shown}"
