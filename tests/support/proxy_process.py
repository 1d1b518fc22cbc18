"""`run_proxy()`: `vm-proxy serve` as a subprocess on a free loopback port.

    with run_proxy(upstream=fake.url) as proxy:
        proxy.base_url      # http://127.0.0.1:<port>/v1, for OPENAI_BASE_URL
        proxy.logs()        # what it wrote to stderr so far

The process runs `python -m proxy` from the repository root (so it works without the
package installed), is killed on exit, and fails the test with its log if it does not
answer /healthz within the timeout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ProxyProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def proxy_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy", *args]


def proxy_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a proxy subprocess: no inherited VM_PROXY_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VM_PROXY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


@contextmanager
def run_proxy(
    *,
    upstream: str,
    store: str = "memory://",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout_s: float = 20.0,
) -> Iterator[ProxyProcess]:
    port = free_port()
    command = proxy_command(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--upstream",
        upstream,
        "--store",
        store,
        *args,
    )
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "proxy.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command, cwd=tmp, env=proxy_env(env), stdout=log_file, stderr=subprocess.STDOUT
            )
        running = ProxyProcess(process, port, log_path)
        try:
            _wait_healthy(running, timeout_s)
            yield running
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(proxy: ProxyProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            raise RuntimeError(f"vm-proxy exited with {proxy.process.returncode}:\n{proxy.logs()}")
        try:
            if httpx.get(f"{proxy.url}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"vm-proxy did not answer /healthz in {timeout_s} s:\n{proxy.logs()}")
