"""`vm-proxy serve` as a process: what it logs, how it stops, where its settings come from.
(The pass-through over a socket, streaming included, is in tests/upstream/relay/test_e2e.py.)"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream, Reply, text_stream
from tests.support.proxy_process import free_port, proxy_command, proxy_env, run_proxy

pytestmark = pytest.mark.e2e

API_KEY = "sk-e2e-do-not-log-me"
SECRET = "the vault opens with 7-3-9"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def access_lines(logs: str) -> list[dict[str, object]]:
    parsed = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    return [line for line in parsed if line.get("logger") == "vm_proxy.access"]


async def test_streams_and_logs_one_json_line_per_request_without_secrets(
    upstream: FakeUpstream,
) -> None:
    with run_proxy(upstream=upstream.url, env={"VM_PROXY_VM__MODE": "off"}) as proxy:
        async with httpx.AsyncClient(trust_env=False, timeout=20) as http:
            client = openai.AsyncOpenAI(
                base_url=proxy.base_url, api_key=API_KEY, http_client=http, max_retries=0
            )
            messages = [{"role": "user", "content": SECRET}]
            reply = await client.chat.completions.create(model="fake-model", messages=messages)
            stream = await client.chat.completions.create(
                model="fake-model", messages=messages, stream=True
            )
            pieces = [c.choices[0].delta.content async for c in stream if c.choices]
            await http.get(f"{proxy.url}/healthz")
        deadline = time.monotonic() + 5
        while len(access_lines(proxy.logs())) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        logs = proxy.logs()
    assert reply.choices[0].message.content == "Hello from the fake upstream."
    assert "".join(p for p in pieces if p) == "Hello from the fake upstream."
    lines = access_lines(logs)
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("POST", "/v1/chat/completions", 200),
        ("POST", "/v1/chat/completions", 200),
    ]
    assert all(isinstance(line["upstream_ms"], float) for line in lines)
    assert all(line["bytes_in"] and line["bytes_out"] for line in lines)
    assert API_KEY not in logs
    assert SECRET not in logs
    assert "Traceback" not in logs
    # The key did reach the upstream: forwarded, not logged.
    assert upstream.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_sigterm_stops_it_cleanly(upstream: FakeUpstream) -> None:
    with run_proxy(upstream=upstream.url) as proxy:
        proxy.process.send_signal(signal.SIGTERM)
        # uvicorn shuts down, then re-raises the signal so the exit status tells why.
        assert proxy.process.wait(timeout=15) in (0, -signal.SIGTERM)
        logs = proxy.logs()
    assert "Traceback" not in logs
    assert "Application shutdown complete." in logs


def test_sigterm_stops_it_with_an_endless_stream_and_a_stalled_body_open() -> None:
    """An upstream stream that never ends, and a client that sent half its body, kept a
    stopping server alive until SIGKILL (the review): after `server.shutdown_timeout_s`
    what is still open is closed and the process exits."""
    import socket

    endless = Reply.sse(text_stream(["tick"] * 2000), delay_s=0.05)

    def handler(request: object) -> Reply:
        return endless

    with FakeUpstream(handler) as slow, run_proxy(
        upstream=slow.url, env={"VM_PROXY_SERVER__SHUTDOWN_TIMEOUT_S": "1"}
    ) as proxy:
        stalled = socket.create_connection(("127.0.0.1", proxy.port))
        stalled.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                        b'{"model": "m", ')
        with httpx.stream("POST", f"{proxy.base_url}/chat/completions", timeout=30, json={
                "model": "m", "stream": True,
                "messages": [{"role": "user", "content": "go on forever"}]}) as streamed:
            chunks = streamed.iter_bytes()
            assert b"tick" in next(chunks) + next(chunks)
            started = time.monotonic()
            proxy.process.send_signal(signal.SIGTERM)
            assert proxy.process.wait(timeout=15) in (0, -signal.SIGTERM)
        stopped = time.monotonic() - started
        stalled.close()
        logs = proxy.logs()
    assert stopped < 8, stopped
    assert "timeout graceful shutdown exceeded" in logs


def test_flags_beat_environment_beat_file(tmp_path: Path, upstream: FakeUpstream) -> None:
    file_port, flag_port = free_port(), free_port()
    config = tmp_path / "vm-proxy.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {file_port}\n'
        '[upstream]\nbase_url = "http://127.0.0.1:9/v1"\n'  # nothing listens on port 9
        '[store]\nurl = "memory://"\n'
    )
    command = proxy_command("serve", "--config", str(config), "--port", str(flag_port))
    env = proxy_env({"VM_PROXY_UPSTREAM__BASE_URL": upstream.url, "VM_PROXY_VM__MODE": "off"})
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        answer = _get_when_up(f"http://127.0.0.1:{flag_port}/v1/models", process)
        assert answer.json() == {
            "object": "list",
            "data": [{"id": "fake-model", "object": "model"}],
        }  # the environment's upstream, not the file's
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{file_port}/healthz", trust_env=False, timeout=1)
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_store_that_cannot_open_stops_start_up(tmp_path: Path, upstream: FakeUpstream) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the store wants a directory")
    result = subprocess.run(
        proxy_command(
            "serve", "--port", str(free_port()), "--upstream", upstream.url,
            "--store", f"sqlite:///{blocked}/pages.db",
        ),
        cwd=tmp_path, env=proxy_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3
    assert result.stderr.startswith("vm-proxy: the store cannot be opened: FileExistsError")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def _get_when_up(url: str, process: subprocess.Popen[bytes]) -> httpx.Response:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "vm-proxy exited"
        try:
            return httpx.get(url, trust_env=False, timeout=2)
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"nothing answered at {url}")


def test_upstream_stream_survives_the_default_mode(upstream: FakeUpstream) -> None:
    # The default mode stores pages even when it relays: the stream must still be intact.
    upstream.handler = lambda _: Reply.sse(text_stream(["Still", " here."]))
    with run_proxy(upstream=upstream.url) as proxy, httpx.Client(trust_env=False) as http:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=API_KEY, http_client=http)
        stream = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Still here."
