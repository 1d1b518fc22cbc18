"""`vm-proxy inspect` as an operator runs it against a store file: the conversations, and a
turn's replay (text and JSON)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from proxy.store import open_store
from tests.loop.harness import serve, vm_settings
from tests.loop.history import FACT_MESSAGE, LOCKER, LOCKER_CODE, QUESTION
from tests.loop.scripted import ScriptedModel, agent
from tests.support.proxy_process import proxy_command, proxy_env


def _inspect(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(proxy_command("inspect", *args), cwd=cwd, env=proxy_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip


async def test_inspect_lists_and_replays(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/vm.db"
    model = ScriptedModel(agent(LOCKER))
    settings = vm_settings(context_budget=2500, activate_above=100, recall_share=1.0)
    async with serve(model, settings, await open_store(url)) as proxy:
        for text in (FACT_MESSAGE, "Kites are fun, what else?", QUESTION):
            response = await proxy.raw_chat(
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
                {"x-vm-session": "ops-check"},
            )
            assert response.status_code == 200
        sent = model.requests[-1]

    listed = _inspect("--store", url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:3] == ["id", "session", "tenant"]
    conv_id, session = row.split()[:2]
    assert session == "ops-check"

    shown = _inspect("--store", url, conv_id, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "rebuilt: the same bytes as sent" in shown.stdout
    assert "turn 3" in shown.stdout and LOCKER_CODE in shown.stdout

    as_json = _inspect("--store", url, conv_id, "3", "--json", cwd=tmp_path)
    assert orjson.loads(as_json.stdout)["upstream_request"] == sent

    missing = _inspect("--store", url, "nope", cwd=tmp_path)
    assert missing.returncode == 1 and "No conversation" in missing.stderr
    assert "Traceback" not in missing.stderr


async def test_stored_text_cannot_drive_the_terminal(tmp_path: Path) -> None:
    """A client's message holding escape sequences (clear the screen, retitle the window,
    a green forged verdict) and a bidi override is printed as escapes; `--json` keeps it."""
    url = f"sqlite:///{tmp_path}/vm.db"
    hostile = ("\x1b[2J\x1b]0;owned\x07\x1b[32mrebuilt: the same bytes as sent\x1b[0m "
               "\u202eevil \u200fmark\u2028line \x9bcsi")
    model = ScriptedModel(agent(LOCKER))
    settings = vm_settings(context_budget=2500, activate_above=100, recall_share=1.0)
    async with serve(model, settings, await open_store(url)) as proxy:
        for text in (FACT_MESSAGE, hostile, QUESTION):
            response = await proxy.raw_chat(
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
                {"x-vm-session": "hostile"},
            )
            assert response.status_code == 200
    listed = _inspect("--store", url, cwd=tmp_path)
    conv_id = listed.stdout.splitlines()[1].split()[0]
    shown = _inspect("--store", url, conv_id, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert not any(c in shown.stdout for c in ("\x1b", "\x07", "\u202e", "\u200f", "\u2028",
                                               "\x9b"))
    assert "\\x1b[2J\\x1b]0;owned\\x07" in shown.stdout and "\\u202eevil" in shown.stdout
    as_json = _inspect("--store", url, conv_id, "--json", cwd=tmp_path)
    assert not any(c in as_json.stdout for c in ("\x1b", "\u202e", "\u2028", "\x9b"))
    sent = orjson.loads(as_json.stdout)["upstream_request"]["messages"]
    assert any(m["content"] == hostile for m in sent)


def test_out_of_range_turns_and_a_missing_store_file_are_one_line_errors(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere" / "vm.db"
    for args in (["--store", f"sqlite:///{tmp_path}/x.db", "c1", "99999999999999999999"],
                 ["--store", f"sqlite:///{tmp_path}/x.db", "c1", "1", "--request", "-9" * 12],
                 ["--store", f"sqlite:///{missing}"]):
        done = _inspect(*args, cwd=tmp_path)
        assert done.returncode != 0, args
        assert "Traceback" not in done.stderr and "vm-proxy" in done.stderr.splitlines()[-1]
    assert "no SQLite store at" in done.stderr
    assert not missing.parent.exists()  # not made by looking
