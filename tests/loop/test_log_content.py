"""`server.log_content`: off, no log record carries a message; on, the fault loop logs each
upstream prompt and the answer it stores."""

from __future__ import annotations

import logging

import pytest

from proxy.config import load_settings
from tests.loop.harness import MODEL, UPSTREAM, VM_DEFAULTS, serve
from tests.loop.history import LOCKER, LOCKER_CODE, QUESTION, conversation
from tests.loop.scripted import ScriptedModel, agent


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
async def test_content_is_logged_only_when_asked(
    caplog: pytest.LogCaptureFixture, on: bool
) -> None:
    settings = load_settings(environ={}, overrides={
        "vm": VM_DEFAULTS, "store": {"url": "memory://"}, "upstream": {"base_url": UPSTREAM},
        "server": {"log_content": on},
    })
    model = ScriptedModel(agent(LOCKER))
    with caplog.at_level(logging.DEBUG):
        async with serve(model, settings) as proxy:
            completion = await proxy.client.chat.completions.create(
                model=MODEL,
                messages=[*conversation(80), {"role": "user", "content": QUESTION}],
            )
    assert LOCKER_CODE in (completion.choices[0].message.content or "")
    prompts = [r for r in caplog.records if r.getMessage() == "upstream prompt"]
    answers = [r for r in caplog.records if r.getMessage() == "answer"]
    if not on:
        assert not prompts and not answers
        assert not any(QUESTION in str(vars(r)) for r in caplog.records)
        return
    assert len(prompts) == len(model.requests) >= 2  # a search or fault, then the answer
    assert [r.body for r in prompts] == model.requests  # type: ignore[attr-defined]
    assert LOCKER_CODE in answers[0].answer["content"]  # type: ignore[attr-defined]
