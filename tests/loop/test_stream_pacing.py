"""How a memory turn's stream keeps time with its upstream: it ends at the upstream's
`[DONE]` (however late the upstream closes), sends keep-alives while the upstream writes
what the client does not get (a VM call), and passes the upstream's own silences on as
silences, so that a client's read timeout fires as it would without the proxy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from proxy.vm.identity import chain_hashes
from tests.loop.harness import MODEL, parse_sse, serve, vm_settings
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import Pieces, ScriptedModel, agent

# (request number, event index, event) -> seconds to wait before sending the event; after
# the last event, `None` as the event: seconds to keep the connection open.
Pace = Callable[[int, int, bytes | None], float]


class _Paced(httpx.AsyncByteStream):
    def __init__(self, number: int, events: list[bytes], pace: Pace) -> None:
        self._number, self._events, self._pace = number, events, pace

    async def __aiter__(self) -> Any:
        for index, event in enumerate([*self._events, None]):
            wait = self._pace(self._number, index, event)
            if wait:
                await asyncio.sleep(wait)
            if event is not None:
                yield event

    async def aclose(self) -> None:
        pass


class PacedModel(ScriptedModel):
    def __init__(self, pace: Pace) -> None:
        super().__init__(agent(LOCKER))
        self.pace = pace

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        number = len(self.requests)
        response = await super().__call__(request)
        stream = response.stream
        if not isinstance(stream, Pieces):
            return response  # not a stream
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Paced(number, stream._chunks, self.pace))


def _request() -> dict[str, Any]:
    return {"model": MODEL, "stream": True,
            "messages": [*conversation(80), {"role": "user", "content": QUESTION}]}


def _text(events: list[Any]) -> str:
    return "".join(ch["delta"].get("content") or "" for e in events
                   if e.data and e.data != "[DONE]" for ch in e.json["choices"])


async def test_the_stream_ends_at_done_however_late_the_upstream_closes() -> None:
    model = PacedModel(lambda number, index, event: 30.0 if event is None else 0.0)
    async with serve(model, vm_settings(keepalive_s=0.05)) as proxy:
        started = time.monotonic()
        response = await proxy.raw_chat(_request())
        took = time.monotonic() - started
        assert model.actions == ["search", "fault", "answer"]
        events = parse_sse(response.text)
        assert LOCKER_CODE in _text(events) and events[-1].data == "[DONE]"
        assert took < 5, took  # three iterations, each left open 30 s after its [DONE]
        # The answer was complete: stored after the question, as it was shown.
        shown = [*_request()["messages"], {"role": "assistant", "content": _text(events)}]
        hashes = chain_hashes(proxy.tenant, shown)
        assert hashes[-1] in await proxy.store.lookup_hashes(proxy.tenant, hashes[-1:])


def _silent_mid_answer(number: int, index: int, event: bytes | None) -> float:
    # The answer (the third request) stops for 0.5 s, ten keep-alive periods, after its
    # second content event.
    return 0.5 if number == 2 and index == 3 else 0.0


async def test_the_upstreams_own_silence_gets_no_keepalives() -> None:
    model = PacedModel(_silent_mid_answer)
    async with serve(model, vm_settings(keepalive_s=0.05)) as proxy:
        response = await proxy.raw_chat(_request())
    assert model.actions == ["search", "fault", "answer"]
    events = parse_sse(response.text)
    shown = [i for i, e in enumerate(events)
             if e.data and e.data != "[DONE]" and _text([e])]
    between = events[shown[0]:shown[-1]]
    assert len(shown) >= 3 and not [e for e in between if e.comment is not None], response.text
    assert LOCKER_CODE in _text(events)


async def test_keepalives_while_a_vm_call_is_written() -> None:
    """The first iteration is a search call the client never sees, written slowly (each
    event 0.03 s after the last, under one keep-alive period): the client hears keep-alives
    while it is written, though the upstream is never silent for a period."""
    model = PacedModel(lambda number, index, event: 0.03 if number == 0 and event else 0.0)
    async with serve(model, vm_settings(keepalive_s=0.05)) as proxy:
        response = await proxy.raw_chat(_request())
    assert model.actions == ["search", "fault", "answer"]
    events = parse_sse(response.text)
    first_text = next(i for i, e in enumerate(events)
                      if e.data and e.data != "[DONE]" and _text([e]))
    assert any(e.comment == "keep-alive" for e in events[:first_text]), response.text
