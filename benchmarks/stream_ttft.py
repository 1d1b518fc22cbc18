"""Time to first token through the proxy, VM-active against pass-through, same run.

`vm-proxy`'s app is served by uvicorn on a loopback port (in this process); its upstream is
an in-process stream that waits `--think-ms`, stamps the moment it emits the first content
chunk, then sends the rest. The client (httpx over the socket) stamps the moment that
chunk arrives. Reported per arm, p50/p99:
- relay: first token's arrival at the client minus its emission upstream (what the
  streaming path itself adds);
- ttft: first token's arrival minus the request's start, less the upstream's think time
  (what the proxy adds before and around the upstream call: for a VM turn that includes
  storing the new messages and packing the request).

    python benchmarks/stream_ttft.py [--turns 1000] [--requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

# Run as a script (python benchmarks/stream_ttft.py) or a module: the repository is on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.vm_turn import conversation  # noqa: E402
from proxy import create_app  # noqa: E402
from proxy.config import load_settings  # noqa: E402
from proxy.store import open_store  # noqa: E402

CHUNK = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
         "model": "gpt-4o-2024-08-06"}


class StampedUpstream:
    def __init__(self, think_s: float) -> None:
        self.think_s = think_s
        self.emitted: list[float] = []

    async def _body(self) -> AsyncIterator[bytes]:
        yield _event({"role": "assistant", "content": ""})
        await asyncio.sleep(self.think_s)
        self.emitted.append(time.perf_counter())
        yield _event({"content": "First"})
        for word in (" words", " of", " the", " answer."):
            yield _event({"content": word})
        yield _event({}, finish="stop")
        yield b"data: [DONE]\n\n"

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if not orjson.loads(request.content).get("stream"):
            raise AssertionError("the benchmark only streams")
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=self._body())


def _event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {**CHUNK, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(turns: int, requests: int, think_ms: float, store_url: str) -> dict[str, Any]:
    upstream = StampedUpstream(think_ms / 1000.0)
    settings = load_settings(environ={}, overrides={
        "vm": {"context_budget": 8000, "activate_above": 4000},
        "store": {"url": store_url},
        "upstream": {"base_url": "http://upstream.bench/v1"},
    })
    store = await open_store(store_url)
    app = create_app(settings, upstream_transport=httpx.MockTransport(upstream.handle),
                     store=store)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           loop="none", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    results: dict[str, Any] = {"turns": turns, "requests": requests, "think_ms": think_ms}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for arm, headers in (("passthrough", {"x-vm-mode": "off"}), ("vm", {})):
                messages = conversation(turns)
                relay: list[float] = []
                ttft: list[float] = []
                for i in range(requests + 1):
                    messages.append({"role": "user", "content": f"Q {arm} {i}: gardening?"})
                    body = orjson.dumps({"model": "gpt-4o", "messages": messages, "stream": True})
                    started = time.perf_counter()
                    first: float | None = None
                    text = []
                    async with client.stream("POST", "/v1/chat/completions", content=body,
                                             headers={**headers,
                                                      "content-type": "application/json"}) as r:
                        assert r.status_code == 200, await r.aread()
                        async for line in r.aiter_lines():
                            if line.startswith("data: {") and '"content":"' in line:
                                piece = json.loads(line[6:])["choices"][0]["delta"]["content"]
                                if piece and first is None:
                                    first = time.perf_counter()
                                text.append(piece)
                    messages.append({"role": "assistant", "content": "".join(text)})
                    if i == 0:
                        continue  # the first request stores the whole history: not a turn
                    assert first is not None
                    relay.append((first - upstream.emitted[-1]) * 1000.0)
                    ttft.append((first - started) * 1000.0 - think_ms)
                results[arm] = {"relay_p50_ms": _p(relay, 50), "relay_p99_ms": _p(relay, 99),
                                "ttft_added_p50_ms": _p(ttft, 50),
                                "ttft_added_p99_ms": _p(ttft, 99)}
    finally:
        server.should_exit = True
        await serving
        await store.close()
    return results


def _p(values: list[float], q: int) -> float:
    ordered = sorted(values)
    if q == 50:
        return round(statistics.median(ordered), 2)
    return round(ordered[max(0, int(len(ordered) * q / 100) - 1)], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--think-ms", type=float, default=20.0)
    parser.add_argument("--store", default="memory://")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.turns, args.requests, args.think_ms, args.store))
    for arm in ("passthrough", "vm"):
        r = result[arm]
        print(f"{arm:>11}: relay p50 {r['relay_p50_ms']} ms p99 {r['relay_p99_ms']} ms | "
              f"ttft added p50 {r['ttft_added_p50_ms']} ms p99 {r['ttft_added_p99_ms']} ms")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
