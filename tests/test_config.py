"""Settings: defaults < TOML file < VM_PROXY_<SECTION>__<KEY> < overrides (the CLI flags);
config/default.toml is the built-in defaults, documented; a bad setting is one clear line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from proxy.config import Settings, SettingsError, load_settings

DEFAULT_TOML = Path(__file__).resolve().parents[1] / "config" / "default.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def test_built_in_defaults_without_file_or_environment() -> None:
    assert load_settings(environ={}) == Settings()


def test_precedence_defaults_file_environment_overrides(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        '[server]\nport = 9001\nhost = "0.0.0.0"\n'
        "[vm]\ncontext_budget = 9000\nactivate_above = 100\n"
        "[upstream]\ntimeout_s = 30.5\n",
    )
    environ = {
        "VM_PROXY_SERVER__PORT": "9002",
        "VM_PROXY_VM__CONTEXT_BUDGET": "10000",
        "UNRELATED": "1",
    }
    overrides = {"server": {"port": 9003, "host": None}, "store": {"url": "memory://"}}

    from_file = load_settings(config, environ={})
    assert from_file.server.port == 9001
    assert from_file.vm.context_budget == 9000

    from_env = load_settings(config, environ=environ)
    assert from_env.server.port == 9002  # environment beats the file
    assert from_env.vm.context_budget == 10000
    assert from_env.vm.activate_above == 100  # the file beats the defaults
    assert from_env.upstream.timeout_s == 30.5

    flagged = load_settings(config, environ=environ, overrides=overrides)
    assert flagged.server.port == 9003  # a flag beats the environment
    assert flagged.server.host == "0.0.0.0"  # a flag not given (None) changes nothing
    assert flagged.store.url == "memory://"
    assert flagged.vm.mode == Settings().vm.mode  # untouched: the built-in default


def test_environment_is_read_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VM_PROXY_UPSTREAM__BASE_URL", "http://127.0.0.1:9999/v1/")
    assert load_settings().upstream.base_url == "http://127.0.0.1:9999/v1"


def test_default_toml_equals_the_built_in_defaults() -> None:
    assert load_settings(DEFAULT_TOML, environ={}) == Settings()


def _fields(model: type[BaseModel]) -> dict[str, set[str]]:
    sections: dict[str, set[str]] = {}
    for name, field in model.model_fields.items():
        section = field.annotation
        assert isinstance(section, type) and issubclass(section, BaseModel), name
        sections[name] = set(section.model_fields)
    return sections


def test_default_toml_documents_every_setting() -> None:
    documented = tomllib.loads(DEFAULT_TOML.read_text())
    expected = _fields(Settings)
    assert set(documented) == set(expected)
    for section, keys in expected.items():
        missing = keys - set(documented[section])
        assert not missing, f"[{section}] does not document {sorted(missing)}"
        assert set(documented[section]) == keys


def test_default_toml_comments_every_setting() -> None:
    """Every key has a comment: on its own line above it (or its group), or after it."""
    lines = DEFAULT_TOML.read_text().splitlines()
    for index, line in enumerate(lines):
        text = line.strip()
        if not text or text.startswith(("#", "[")):
            continue
        above = index - 1
        while above >= 0 and lines[above].strip() and not lines[above].strip().startswith("#"):
            if lines[above].strip().startswith("["):
                break
            above -= 1
        commented = "#" in line or (above >= 0 and lines[above].strip().startswith("#"))
        assert commented, f"config/default.toml: {text!r} has no comment"


BAD = [
    pytest.param('[vm]\ncontext_budget = "lots"\n', {}, "vm.context_budget", id="file-type"),
    pytest.param('[vm]\nmode = "loud"\n', {}, "vm.mode", id="file-choice"),
    pytest.param("[server]\nport = 70000\n", {}, "server.port", id="file-range"),
    pytest.param("[vm]\nbudget = 1\n", {}, "vm.budget", id="file-unknown-key"),
    pytest.param("[nonsense]\nx = 1\n", {}, "nonsense", id="file-unknown-section"),
    pytest.param("", {"VM_PROXY_VM__CONTEXT_BUDGET": "abc"}, "vm.context_budget", id="env-type"),
    pytest.param("", {"VM_PROXY_UPSTREAM__BASE_URL": "ftp://x"}, "upstream.base_url", id="env-url"),
    pytest.param("", {"VM_PROXY_STORE__URL": "mysql://x"}, "store.url", id="env-store"),
    pytest.param("", {"VM_PROXY_VM__NO_SUCH": "1"}, "vm.no_such", id="env-unknown-key"),
    pytest.param(
        "", {"VM_PROXY_CONTEXT_BUDGET": "1"}, "VM_PROXY_CONTEXT_BUDGET", id="env-no-section"
    ),
    pytest.param("[vm\n", {}, "settings.toml", id="file-not-toml"),
]


@pytest.mark.parametrize(("toml", "environ", "named"), BAD)
def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, toml: str, environ: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_write(tmp_path, toml), environ=environ)
    message = str(caught.value)
    assert named in message
    assert "\n" not in message.strip()


def test_a_missing_config_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(SettingsError, match="nope.toml"):
        load_settings(missing, environ={})


def test_activate_above_is_capped_at_the_budget() -> None:
    lowered = load_settings(environ={}, overrides={"vm": {"context_budget": 4000}})
    assert lowered.vm.activate_above == 4000
    env = {"VM_PROXY_VM__CONTEXT_BUDGET": "3000", "VM_PROXY_VM__ACTIVATE_ABOVE": "5000"}
    assert load_settings(environ=env).vm.activate_above == 3000
    kept = load_settings(environ={}, overrides={"vm": {"context_budget": 9000}})
    assert kept.vm.activate_above == 6000
