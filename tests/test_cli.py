"""The `vm-proxy` command as a user runs it: bad settings stop start-up with one line and
exit status 2, `--version`, and `gc` on a SQLite store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proxy import __version__
from proxy.store import open_store
from tests.support.proxy_process import proxy_command, proxy_env

TIMEOUT_S = 60


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        proxy_command(*args),
        cwd=cwd,
        env=proxy_env(env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_bad_config_file_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[vm]\ncontext_budget = "lots"\n')
    result = _run(["serve", "--config", str(bad)], tmp_path)
    assert result.returncode == 2
    assert "vm.context_budget" in _one_line(result.stderr)


def test_unknown_setting_in_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nprot = 1\n")
    result = _run(["serve", "--config", str(bad)], tmp_path)
    assert result.returncode == 2
    assert "server.prot" in _one_line(result.stderr)


def test_bad_environment_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    result = _run(["serve"], tmp_path, {"VM_PROXY_VM__CONTEXT_BUDGET": "abc"})
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert "vm.context_budget" in line
    assert "abc" in line


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = _run(["serve", "--config", str(tmp_path / "absent.toml")], tmp_path)
    assert result.returncode == 2
    assert "absent.toml" in _one_line(result.stderr)


def test_version(tmp_path: Path) -> None:
    result = _run(["--version"], tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"vm-proxy {__version__}"


def test_installed_console_script_prints_the_version(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("vm-proxy")
    if not script.exists():
        pytest.skip("the vm-proxy console script is not installed in this environment")
    result = subprocess.run(
        [str(script), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"vm-proxy {__version__}"


async def _conversations(url: str, tenant: str, ids: dict[str, float]) -> None:
    """Create conversations last touched at the given epoch seconds."""
    for conv_id, touched in ids.items():
        store = await open_store(url, clock=lambda touched=touched: touched)
        try:
            await store.create_conversation(tenant, conv_id)
        finally:
            await store.close()


async def _surviving(url: str, tenant: str, ids: list[str]) -> list[str]:
    store = await open_store(url)
    try:
        return [c for c in ids if await store.get_conversation(tenant, c) is not None]
    finally:
        await store.close()


async def test_gc_deletes_only_conversations_older_than_asked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tmp.db'}"
    now = time.time()
    await _conversations(url, "t1", {"old": now - 3 * 86400, "fresh": now - 3600})
    result = await asyncio.to_thread(
        _run, ["gc", "--store", url, "--older-than-days", "1"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "deleted 1 conversation" in result.stdout
    assert "Traceback" not in result.stderr
    assert await _surviving(url, "t1", ["old", "fresh"]) == ["fresh"]


def test_gc_on_an_empty_sqlite_store(tmp_path: Path) -> None:
    database = tmp_path / "tmp.db"
    asyncio.run(_open_and_close(f"sqlite:///{database}"))
    result = _run(["gc", "--store", f"sqlite:///{database}", "--older-than-days", "1"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "deleted 0 conversation" in result.stdout


def test_gc_and_inspect_on_a_mistyped_sqlite_path_make_nothing(tmp_path: Path) -> None:
    """A store file that is not there is an error, not an empty store made by looking."""
    database = tmp_path / "typo" / "tmp.db"
    for command in (["gc", "--older-than-days", "1"], ["inspect"]):
        result = _run([*command, "--store", f"sqlite:///{database}"], tmp_path)
        assert result.returncode == 1
        assert f"no SQLite store at {database}" in _one_line(result.stderr)
    assert not database.parent.exists()


async def _open_and_close(url: str) -> None:
    store = await open_store(url)
    await store.close()


@pytest.mark.parametrize("age", ["nan", "inf", "-1"])
def test_gc_refuses_an_age_that_is_no_number_of_days(tmp_path: Path, age: str) -> None:
    result = _run(
        ["gc", "--store", f"sqlite:///{tmp_path / 'tmp.db'}", "--older-than-days", age], tmp_path
    )
    assert result.returncode == 2
    assert "older-than-days" in _one_line(result.stderr)


@pytest.mark.parametrize("store", [
    "postgresql://user:pw-secret@127.0.0.1:1/db", "sqlite:///{tmp}/afile/x.db",
    "sqlite:///{tmp}/notadb.db"], ids=["postgres closed port", "under a file", "not a database"])
def test_a_store_that_cannot_open_is_one_line_for_serve_and_gc(tmp_path: Path, store: str) -> None:
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "notadb.db").write_bytes(b"this is not a database file at all" * 200)
    url = store.format(tmp=tmp_path)
    served = _run(["serve", "--store", url, "--port", "1", "--upstream", "http://127.0.0.1:9/v1"],
                  tmp_path)
    assert served.returncode == 3
    line = _one_line(served.stderr)
    assert line.startswith("vm-proxy: the store cannot be opened:") and "pw-secret" not in line
    collected = _run(["gc", "--store", url, "--older-than-days", "1"], tmp_path)
    assert collected.returncode == 1
    assert ("could not be collected" in _one_line(collected.stderr)
            or "no SQLite store at" in collected.stderr)


def test_an_embeddings_provider_that_cannot_run_is_one_line(tmp_path: Path) -> None:
    served = _run(["serve", "--store", "memory://", "--port", "1"], tmp_path, env={
        "VM_PROXY_EMBEDDINGS__PROVIDER": "onnx",
        "VM_PROXY_EMBEDDINGS__PATH": str(tmp_path / "no-model")})
    assert served.returncode == 3
    assert "embeddings.provider = 'onnx' cannot run" in _one_line(served.stderr)


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/v1", "http:///v1", "http://", "ftp://x/v1"])
def test_an_upstream_url_without_a_host_or_a_valid_port_is_refused(
    tmp_path: Path, url: str
) -> None:
    result = _run(["serve", "--store", "memory://", "--upstream", url], tmp_path)
    assert result.returncode == 2
    assert "upstream.base_url" in _one_line(result.stderr)


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "binary.toml"
    config.write_bytes(b"[vm]\nmode = \"\xff\xfe\"\n")
    result = _run(["serve", "--config", str(config)], tmp_path)
    assert result.returncode == 2
    assert "not UTF-8" in _one_line(result.stderr)


def test_a_refused_secret_is_not_repeated(tmp_path: Path) -> None:
    result = _run(["serve", "--store", "memory://"], tmp_path,
                  env={"VM_PROXY_ADMIN__API_KEY": "short-secret"})
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert "admin.api_key" in line and "short-secret" not in line


async def test_gc_takes_its_age_from_store_retention_days(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tmp.db'}"
    now = time.time()
    await _conversations(url, "t1", {"old": now - 3 * 86400, "fresh": now - 3600})
    config = tmp_path / "proxy.toml"
    config.write_text(f'[store]\nurl = "{url}"\nretention_days = 2\n')
    result = await asyncio.to_thread(_run, ["gc", "--config", str(config)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "deleted 1 conversation" in result.stdout
    assert await _surviving(url, "t1", ["old", "fresh"]) == ["fresh"]


def test_gc_with_retention_off_deletes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "tmp.db"}"\n')
    result = _run(["gc", "--config", str(config)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "retention off" in result.stdout and "nothing deleted" in result.stdout


def test_the_start_up_check_does_not_load_a_named_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model is loaded once, by the server (the check loaded it too: twice the start-up
    time and memory of a large model)."""
    pytest.importorskip("onnxruntime", reason="the embeddings extra is not installed")
    from proxy import cli
    from proxy.config import load_settings
    from proxy.embeddings.local import OnnxEmbedder

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not read by the check")
    (folder / "tokenizer.json").write_text("{}")

    def loaded(cls: object, path: str) -> None:
        raise AssertionError("the check loaded the model")

    monkeypatch.setattr(OnnxEmbedder, "load", classmethod(loaded))
    settings = load_settings(environ={}, overrides={
        "store": {"url": "memory://"},
        "embeddings": {"provider": "onnx", "path": str(folder)}})
    assert cli._cannot_start(settings) is None
    (folder / "tokenizer.json").unlink()
    assert "tokenizer.json does not exist" in (cli._cannot_start(settings) or "")
