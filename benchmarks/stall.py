"""Does one heavy request stall everyone else? (issue 13)

    python benchmarks/stall.py [--message-mb 30] [--stream-mb 50] [--repeat 3]

Starts a fake upstream and `vm-proxy serve` (SQLite store in a temporary folder) on
loopback, then measures how fast `/healthz` and a short chat of another client answer:
- idle: nothing else running (the baseline, measured in the same run);
- message: while a client sends one user message of `--message-mb` MB of a single
  character (the worst case for the tokenizer), `--repeat` times in a row;
- stream: while the upstream streams `--stream-mb` MB of answer to a client on the
  forwarded path (the answer is stored once it is complete), `--repeat` times.

The heavy client and the upstream run in processes of their own, so that only the proxy
is shared. Prints p50/p99/max of both probes per phase, the heavy request's duration, and
the p99 ratio against idle; the goal is a p99 within 100 ms while the heavy work runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
PROBE_EVERY_S = 0.02
SHORT_CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello?"}]}
BIG_STREAM_MODEL = "big-stream"
DELTA_CHARS = 4096


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the fake upstream (its own process) --------------------------------------------------


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stall",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {"id": "chatcmpl-stall", "object": "chat.completion.chunk",
             "created": 1_700_000_000, "model": "fake",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def _chat(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    # A huge prompt is not parsed: this process shares the machine's two cores with the
    # proxy, and parsing 30 MB here would be charged to the proxy's latency.
    body = json.loads(raw) if len(raw) < (1 << 20) else {}
    if body.get("model") != BIG_STREAM_MODEL:
        if body.get("stream"):
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            await response.write(_chunk({"role": "assistant", "content": "Hi."}))
            await response.write(_chunk({}, "stop") + b"data: [DONE]\n\n")
            return response
        return web.json_response(_completion("Hi."))
    megabytes = float(request.headers.get("x-stall-mb", "50"))
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    piece = _chunk({"content": ("lorem ipsum dolor sit amet " * DELTA_CHARS)[:DELTA_CHARS]})
    await response.write(_chunk({"role": "assistant", "content": ""}))
    for _ in range(int(megabytes * 1024 * 1024 / DELTA_CHARS)):
        await response.write(piece)
    await response.write(_chunk({}, "stop") + b"data: [DONE]\n\n")
    return response


def serve_upstream(port: int) -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", _chat)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


# -- the heavy client (its own process) ---------------------------------------------------


async def heavy(port: int, kind: str, megabytes: float, repeat: int) -> None:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    durations = []
    statuses = []
    timeout = aiohttp.ClientTimeout(total=1800)
    bodies = []
    for i in range(repeat):
        if kind == "message":
            text = "a" * int(megabytes * 1024 * 1024)
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{i}{text}"}]}
        else:
            body = {"model": BIG_STREAM_MODEL, "stream": True,
                    "messages": [{"role": "user", "content": f"Talk at length, {i}."}]}
        bodies.append(json.dumps(body).encode())
    headers = {"authorization": "Bearer sk-heavy", "x-stall-mb": str(megabytes),
               "content-type": "application/json"}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for data in bodies:
            started = time.perf_counter()
            async with session.post(url, data=data, headers=headers) as response:
                async for _ in response.content.iter_chunked(1 << 16):
                    pass
                statuses.append(response.status)
            durations.append(round(time.perf_counter() - started, 3))
    print(json.dumps({"durations_s": durations, "statuses": statuses}), flush=True)


# -- the probes (this process) ------------------------------------------------------------


async def probe(port: int, until: asyncio.Event, min_s: float) -> dict[str, list[float]]:
    base = f"http://127.0.0.1:{port}"
    found: dict[str, list[float]] = {"healthz": [], "chat": []}
    errors = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        headers = {"authorization": "Bearer sk-probe"}
        while not until.is_set() or time.perf_counter() - started < min_s:
            t = time.perf_counter()
            async with session.get(base + "/healthz") as response:
                await response.read()
                errors += response.status != 200
            found["healthz"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            async with session.post(base + "/v1/chat/completions", json=SHORT_CHAT,
                                    headers=headers) as response:
                await response.read()
                errors += response.status != 200
            found["chat"].append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(PROBE_EVERY_S)
    found["errors"] = [float(errors)]
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def phase(
    port: int, heavy_args: list[str] | None, seconds: float = 3.0
) -> dict[str, Any]:
    until = asyncio.Event()
    if heavy_args is None:
        until.set()
        samples = await probe(port, until, min_s=seconds)
        return {"samples": samples}
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "heavy", "--port", str(port), *heavy_args,
        stdout=subprocess.PIPE,
    )
    probing = asyncio.ensure_future(probe(port, until, min_s=1.0))
    out, _ = await process.communicate()
    # The answer is stored after it was sent: keep probing while that happens.
    await asyncio.sleep(2.0)
    until.set()
    samples = await probing
    return {"samples": samples, "heavy": json.loads(out.decode().strip().splitlines()[-1])}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("healthz", "chat"):
        values = result["samples"][name]
        out[name] = {"n": len(values), "p50_ms": round(percentile(values, 0.5), 2),
                     "p99_ms": round(percentile(values, 0.99), 2),
                     "max_ms": round(max(values), 2)}
    out["probe_errors"] = int(result["samples"]["errors"][0])
    if "heavy" in result:
        out["heavy"] = result["heavy"]
    return out


def wait_ready(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="run", choices=["run", "upstream", "heavy"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kind", choices=["message", "stream"], default="message")
    parser.add_argument("--mb", type=float, default=30.0)
    parser.add_argument("--message-mb", type=float, default=30.0)
    parser.add_argument("--stream-mb", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--phases", default="idle,message,stream")
    parser.add_argument("--store", default="", help="store URL (default: SQLite in a temp dir)")
    args = parser.parse_args(argv)
    if args.role == "upstream":
        serve_upstream(args.port)
        return 0
    if args.role == "heavy":
        asyncio.run(heavy(args.port, args.kind, args.mb, args.repeat))
        return 0
    upstream_port, proxy_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "VM_PROXY_SERVER__LOG_LEVEL": "warning",
               "VM_PROXY_SERVER__MAX_BODY_BYTES": str(64 * 1024 * 1024)}
        upstream = subprocess.Popen(
            [sys.executable, __file__, "upstream", "--port", str(upstream_port)])
        proxy = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--port", str(proxy_port),
             "--upstream", f"http://127.0.0.1:{upstream_port}/v1",
             "--store", args.store or f"sqlite:///{folder}/stall.db"], env=env, cwd=ROOT)
        try:
            wait_ready(upstream_port)
            wait_ready(proxy_port)
            # Warm up: the first chat loads the tokenizer's ranks (a second, once).
            asyncio.run(phase(proxy_port, None, seconds=1.0))
            report: dict[str, Any] = {}
            for name in args.phases.split(","):
                heavy_args = None
                if name == "message":
                    heavy_args = ["--kind", "message", "--mb", str(args.message_mb),
                                  "--repeat", str(args.repeat)]
                elif name == "stream":
                    heavy_args = ["--kind", "stream", "--mb", str(args.stream_mb),
                                  "--repeat", str(args.repeat)]
                report[name] = summary(asyncio.run(phase(proxy_port, heavy_args)))
                print(name, json.dumps(report[name]), flush=True)
            idle = report.get("idle")
            if idle:
                for name, result in report.items():
                    if name != "idle":
                        for probe_name in ("healthz", "chat"):
                            result[probe_name]["p99_vs_idle"] = round(
                                result[probe_name]["p99_ms"] / idle[probe_name]["p99_ms"], 2)
            print(json.dumps(report, indent=2))
        finally:
            for process in (proxy, upstream):
                process.terminate()
                process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
