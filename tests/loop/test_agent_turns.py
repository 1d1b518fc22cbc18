"""An agent's turn that outgrows the budget: one task, many rounds of client tool calls,
the whole history resent each round. What must be sent is cut to fit (never over the
budget), and the earlier steps the window leaves out are still shown or named."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.loop.harness import MODEL, serve, upstream_cost, vm_settings
from tests.loop.scripted import Answer, Call, Calls, ScriptedModel

RUN = {"type": "function", "function": {
    "name": "run", "description": "Run a shell command.",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}},
                   "required": ["cmd"]}}}


def _output(step: int, lines: int) -> str:
    return f"FINDING{step}: module m{step} fails with code E{step}00.\n" + "\n".join(
        f"log line {step}.{j}: compiling unit u{j} ok" for j in range(lines))


async def _agent(budget: int, lines: list[int]) -> tuple[ScriptedModel, Any]:
    """Rounds of one `run` call each, their outputs `lines` long, then an answer."""
    model = ScriptedModel(lambda reading: Answer("Done."))
    for step in range(len(lines)):
        model.queue(Calls([Call("run", {"cmd": f"step {step}"})]))
    settings = vm_settings(context_budget=budget, activate_above=1000, recall_share=1.0)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "Investigate the failing build and report."}]
    async with serve(model, settings) as proxy:
        for step, count in enumerate(lines):
            reply = await proxy.client.chat.completions.create(
                model=MODEL, messages=messages, tools=[RUN], max_tokens=300)
            message = reply.choices[0].message
            messages.append(message.model_dump(exclude_none=True))
            messages.append({"role": "tool", "tool_call_id": message.tool_calls[0].id,
                             "content": _output(step, count)})
        await proxy.client.chat.completions.create(
            model=MODEL, messages=messages, tools=[RUN], max_tokens=300)
    return model, settings


@pytest.mark.parametrize("budget", [4000, 5000])
async def test_every_earlier_step_is_shown_or_named(budget: int) -> None:
    model, settings = await _agent(budget, [60] * 14)
    last = model.requests[-1]
    assert upstream_cost(last, settings) <= budget
    text = json.dumps(last["messages"])
    shown = {int(n) for n in re.findall(r"FINDING(\d+):", text)}
    named = set(re.findall(r"msg_\d+", text))
    # Step k's result is message 3 + 2k (system, task, then a call and its result each).
    missing = [k for k in range(14) if k not in shown and f"msg_{3 + 2 * k}" not in named]
    assert not missing, (missing, shown)
    assert shown >= {11, 12, 13}  # the latest steps, verbatim


async def test_open_results_larger_than_the_budget_are_cut_to_fit() -> None:
    model, settings = await _agent(3000, [20, 20, 1500])
    for body in model.requests:
        assert upstream_cost(body, settings) <= 3000
    tool_results = [m["content"] for m in model.requests[-1]["messages"] if m["role"] == "tool"]
    latest = tool_results[-1]
    # Its beginning and its end, and what was left out said.
    assert latest.startswith("FINDING2:") and latest.endswith("log line 2.1499: compiling unit"
                                                              " u1499 ok")
    assert "left out by vm-proxy" in latest


async def test_a_tight_budget_still_names_steps_left_out() -> None:
    """Too little room to name all fourteen: the block still shows or names the earliest
    ones (before, the window took all the room and they were nowhere in the prompt)."""
    model, settings = await _agent(3000, [60] * 14)
    last = model.requests[-1]
    assert upstream_cost(last, settings) <= 3000
    text = json.dumps(last["messages"])
    assert "<VM:CONTEXT>" in text
    assert {"msg_3", "msg_5", "msg_7"} <= set(re.findall(r"msg_\d+", text))
