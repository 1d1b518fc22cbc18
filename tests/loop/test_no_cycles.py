"""A memory-active turn is freed as soon as it ends: none of its objects is left in a
reference cycle for the garbage collector. A turn holds its prompt's records, its log and
its fault state, some hundreds of objects; left in a cycle, they piled up until a young
collection walked tens of thousands of them, a pause of 10-30 ms every few dozen turns
(benchmarks/responses_turn.py: the Responses turn's p99 39-47 ms against 16-24 ms once the
fault state's hold on its turn was made weak)."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.loop.harness import MODEL, Proxy, serve
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION
from tests.loop.scripted import ScriptedModel, agent
from tests.loop.scripted_responses import ResponsesModel


@contextmanager
def cyclic_garbage() -> Iterator[list[Any]]:
    """The objects that only the collector would have freed, of what ran inside."""
    found: list[Any] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def the_proxy_s(garbage: list[Any]) -> list[str]:
    """The types of the proxy's own objects among `garbage` (the test's client has cycles
    of its own). A cycle of nothing but dicts, lists and closures would not show here;
    one through a turn, a store or a request's objects does."""
    return sorted({type(o).__qualname__ for o in garbage
                   if type(o).__module__.startswith("proxy.")})


async def chat_turn(proxy: Proxy, history: list[dict[str, Any]], stream: bool) -> str:
    messages = [*history, {"role": "user", "content": QUESTION}]
    if not stream:
        done = await proxy.client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
        return done.choices[0].message.content or ""
    chunks = await proxy.client.chat.completions.create(
        model=MODEL, messages=messages, stream=True)  # type: ignore[arg-type]
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def responses_turn(proxy: Proxy, history: list[dict[str, Any]], stream: bool) -> str:
    items = [*history[1:], {"role": "user", "content": QUESTION}]
    if not stream:
        done = await proxy.client.responses.create(
            model=MODEL, instructions=history[0]["content"], input=items)  # type: ignore[arg-type]
        return done.output_text
    events = await proxy.client.responses.create(
        model=MODEL, instructions=history[0]["content"], input=items, stream=True)  # type: ignore[arg-type]
    return "".join([e.delta async for e in events if e.type == "response.output_text.delta"])


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("dialect", ["chat", "responses"])
async def test_a_memory_active_turn_leaves_no_cycle(
    dialect: str, stream: bool, long_history: list[dict[str, Any]]
) -> None:
    if dialect == "chat":
        model: Any = ScriptedModel(agent(LOCKER))
        path, turn = "/chat/completions", chat_turn
    else:
        model, path, turn = ResponsesModel(agent(LOCKER)), "/responses", responses_turn
    ask: Callable[[Proxy, list[dict[str, Any]], bool], Awaitable[str]] = turn
    async with serve(model, path=path) as proxy:
        await ask(proxy, long_history, stream)  # stores the history; warms what is cached
        with cyclic_garbage() as garbage:
            answer = await ask(proxy, long_history, stream)
    assert LOCKER_CODE in answer
    assert "fault" in model.actions  # memory was active: the turn searched and faulted
    assert the_proxy_s(garbage) == []


async def test_a_short_chat_s_turn_leaves_no_cycle() -> None:
    # Below the threshold: relayed as it is and stored with its answer (the short chat's
    # path, proxy.loop.short_chat; then the general one, for a history it does not know).
    model = ScriptedModel(agent(LOCKER))
    history = [{"role": "user", "content": "Hello there."}]
    async with serve(model) as proxy:
        first = await proxy.client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
        history += [{"role": "assistant", "content": first.choices[0].message.content},
                    {"role": "user", "content": "And the weather?"}]
        with cyclic_garbage() as garbage:
            await proxy.client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
            await proxy.client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "A new chat."}])
    assert the_proxy_s(garbage) == []
