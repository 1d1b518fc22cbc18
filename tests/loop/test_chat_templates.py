"""The memory turn's prompt, rendered through real open-model chat templates (issue 13,
item 8): with the default prompt shape for an upstream that is not OpenAI's, every template
with a system role renders it, and the memory the proxy sends is in the rendered text (not
silently dropped). The templates live in ../shared/chat_templates (see its README); the
test skips without them.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from proxy.config import load_settings, with_prompt_shape
from proxy.vm.summary_prompt import build_prompt
from tests.http.conftest import completion, edge, settings_with
from tests.vm.test_summary_prompt import _segment

TEMPLATES = Path(__file__).resolve().parents[2] / ".." / "shared" / "chat_templates"
# Templates with no system role at all: a client's own system prompt fails there too
# (gemma-2 raises, this Mistral template drops it), so no placement of the memory helps.
NO_SYSTEM_ROLE = {"gemma-2-2b-it.jinja", "mistral_tools.jinja"}
FACT = "the locker code for room 3 is 1003"


def templates() -> list[str]:
    if not TEMPLATES.is_dir():
        return []
    return sorted(p.name for p in TEMPLATES.glob("*.jinja"))


def render(name: str, messages: list[dict[str, Any]], tools: list[Any] | None) -> str:
    """As transformers' apply_chat_template does (the README's render setup)."""

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = lambda value, indent=None, **_: json.dumps(
        value, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime(2026, 1, 2).strftime(fmt)
    template = env.from_string((TEMPLATES / name).read_text(encoding="utf-8"))
    return template.render(messages=messages, tools=tools, bos_token="<s>",
                           eos_token="</s>", add_generation_prompt=True)


async def memory_turn(**vm: Any) -> dict[str, Any]:
    """The first upstream body of a memory-active turn whose answer lies in an old turn."""
    seen: list[dict[str, Any]] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=completion("Room 3: 1003."))

    settings = settings_with(vm={"mode": "strict", "context_budget": 4000,
                                 "activate_above": 800, "pin_last_turns": 1, **vm})
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are helpful."}]
    for i in range(30):
        messages.append({"role": "user", "content": f"Note {i}: the locker code for room {i}"
                                                    f" is {1000 + i}. " + "filler " * 12})
        messages.append({"role": "assistant", "content": f"Noted room {i}."})
    messages.append({"role": "user", "content": "What is the locker code for room 3?"})
    async with edge(upstream, settings) as proxy:
        response = await proxy.http.post(
            "/v1/chat/completions", json={"model": "llama-3", "messages": messages},
            headers={"authorization": "Bearer sk-test"})
        assert response.status_code == 200
    return seen[0]


def memory_of(body: dict[str, Any]) -> list[str]:
    """The proxy's own messages: every system/developer message with VM content."""
    return [m["content"] for m in body["messages"]
            if m["role"] in ("system", "developer") and "<VM:" in m["content"]]


@pytest.mark.skipif(not templates(), reason=f"no chat templates in {TEMPLATES}")
@pytest.mark.parametrize("name", templates() or ["none"])
async def test_the_default_shape_renders_with_its_memory(name: str) -> None:
    body = await memory_turn()
    memory = memory_of(body)
    assert memory and FACT in "".join(memory)  # the old turn was found and sent
    if name in NO_SYSTEM_ROLE:
        own = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        try:
            rendered = render(name, own, None)
        except TemplateError:
            return
        assert "Be brief." not in rendered
        return
    rendered = render(name, body["messages"], body.get("tools"))
    assert FACT in rendered
    for content in memory:
        assert content.strip() in rendered or _normalised(content) in _normalised(rendered)


@pytest.mark.skipif(not templates(), reason=f"no chat templates in {TEMPLATES}")
async def test_openais_shape_breaks_strict_templates() -> None:
    """Why the default differs for other upstreams: a developer message and a late one."""
    body = await memory_turn(developer_role="developer", turn_note="message")
    assert [m["role"] for m in body["messages"]][-1] == "developer"
    failures = 0
    strict = ("mistral3_tools.jinja", "Qwen2.5-7B-Instruct.jinja", "gemma3_pythonic_tools.jinja")
    for name in strict:
        try:
            rendered = render(name, body["messages"], body.get("tools"))
        except TemplateError:
            failures += 1
            continue
        failures += FACT not in rendered
    assert failures == 3


def test_auto_is_decided_by_the_upstream() -> None:
    def shape(base_url: str, **vm: str) -> tuple[str, str]:
        settings = load_settings(environ={}, overrides={"upstream": {"base_url": base_url},
                                                        "vm": vm})
        resolved = with_prompt_shape(settings).vm
        return resolved.developer_role, resolved.turn_note

    assert shape("https://api.openai.com/v1") == ("developer", "message")
    assert shape("http://127.0.0.1:8000/v1") == ("system", "leading")
    assert shape("https://openrouter.ai/api/v1") == ("system", "leading")
    assert shape("http://vllm:8000/v1", developer_role="developer") == ("developer", "leading")
    assert shape("https://api.openai.com/v1", turn_note="leading") == ("developer", "leading")


def _normalised(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.skipif(not templates(), reason=f"no chat templates in {TEMPLATES}")
@pytest.mark.parametrize("name", sorted(set(templates()) - NO_SYSTEM_ROLE) or ["none"])
def test_the_summarizer_s_call_renders_whole(name: str) -> None:
    # vm.summarizer may name a local model: its instructions (a system message) and the
    # pages to summarise must both reach the rendered prompt.
    summary, pages = _segment()
    prompt = build_prompt(summary, [pages[i] for i in summary.covers])
    rendered = render(name, [dict(m) for m in prompt.messages], None)
    for message in prompt.messages:
        for line in message["content"].splitlines():
            if line.strip():
                assert line.strip() in rendered, (name, line)
