"""The inspector page in a real browser (Playwright driving the system's Chromium) against
`vm-proxy serve` with a scripted upstream on loopback: the conversation list loads, a
turn's context is what the upstream received, and search finds a fact.

Skips, saying why, where Playwright or Chromium is absent (.ci/run installs both).
`VM_INSPECTOR_SCREENSHOT=path.png` saves a screenshot of the turn view (the README's).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.loop.history import FACT_MESSAGE, LOCKER, LOCKER_CODE, QUESTION, SYSTEM, filler_turn
from tests.loop.scripted import ScriptedModel, agent
from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import run_proxy

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("VM_TEST_CHROMIUM", "/usr/bin/chromium")
# As the machine notes ask: no background traffic, which this closed network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ADMIN_KEY = "inspector-admin-key-0123456789"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def logged_in(browser: Any, url: str, viewport: dict[str, int]) -> Any:
    """A page of the inspector at `url`, the admin key given, its conversations listed."""
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{url}/admin/")
    page.fill("#key", ADMIN_KEY)
    page.click("#login button")
    page.wait_for_selector("#conversations li")
    return page


def test_the_inspector_shows_what_the_model_saw(browser: Any, tmp_path: Path) -> None:
    model = ScriptedModel(agent(LOCKER))
    with FakeUpstream(model.fake_upstream_handler) as upstream, run_proxy(
        upstream=upstream.url,
        store=f"sqlite:///{tmp_path}/vm.db",
        env={"VM_PROXY_ADMIN__API_KEY": ADMIN_KEY, "VM_PROXY_VM__ACTIVATE_ABOVE": "300",
             "VM_PROXY_VM__CONTEXT_BUDGET": "3000", "VM_PROXY_VM__DEVELOPER_ROLE": "developer",
             "VM_PROXY_VM__TURN_NOTE": "message", "VM_PROXY_VM__WINDOW_SHARE": "0.1"},
    ) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-browser-test",
                               max_retries=0)  # fmt: skip
        turns = 16
        first_of_last = 0
        for turn in range(turns):
            text = filler_turn(random.Random(turn), turn)[0]
            text = FACT_MESSAGE if turn == 2 else QUESTION if turn == turns - 1 else text
            messages: list[Any] = [{"role": "user", "content": text}]
            if turn == 0:
                messages.insert(0, {"role": "system", "content": SYSTEM})
            first_of_last = len(upstream.requests)
            client.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                           extra_headers={"x-vm-session": "browser-chat"})
        sent = upstream.requests[first_of_last].json()

        page = logged_in(browser, proxy.url, {"width": 1500, "height": 1700})
        assert "browser-chat" in page.inner_text("#conversations")

        page.click("#conversations li")
        page.wait_for_selector(f'#timeline rect.turn[data-turn="{turns}"]')
        page.locator(f'#timeline rect.turn[data-turn="{turns}"]').last.click()
        page.wait_for_selector("#turn-title")
        assert page.inner_text("#turn-title") == f"Turn {turns}"
        assert "the same bytes as sent" in page.inner_text("#turn-head")
        shown = page.eval_on_selector_all(
            "#context .message pre.content", "nodes => nodes.map(n => n.textContent)")
        assert shown == [m["content"] for m in sent["messages"]]
        # The recalled fact's line is marked with its level.
        levels = page.eval_on_selector_all(
            "#context .line[data-level]", "nodes => nodes.map(n => n.dataset.level)")
        assert levels and set(levels) <= {"0", "1", "2", "3"}
        screenshot = os.environ.get("VM_INSPECTOR_SCREENSHOT")
        if screenshot:
            page.screenshot(path=screenshot, full_page=False)

        page.click('.tabs button[data-tab="search"]')
        page.fill("#query", "locker code")
        page.click("#search-form button")
        page.wait_for_selector("#results li")
        assert LOCKER_CODE in page.inner_text("#results")
        page.locator("#results li").first.click()
        page.wait_for_selector("#page-body h3")
        assert "level 0" in page.inner_text("#page-body")


def test_bidi_overrides_in_stored_text_are_shown_not_obeyed(
    browser: Any, tmp_path: Path
) -> None:
    """A message holding a right-to-left override would reorder the rest of its line on
    the page (the review): the page shows its code point instead."""
    model = ScriptedModel(agent(LOCKER))
    hostile = "pay \u202etxt.exe to the account \u2066isolated\u2069 now"
    with FakeUpstream(model.fake_upstream_handler) as upstream, run_proxy(
        upstream=upstream.url, store=f"sqlite:///{tmp_path}/vm.db",
        env={"VM_PROXY_ADMIN__API_KEY": ADMIN_KEY},
    ) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-browser-test",
                               max_retries=0)  # fmt: skip
        client.chat.completions.create(model="gpt-4o-mini", extra_headers={
            "x-vm-session": "bidi-chat"}, messages=[{"role": "user", "content": hostile}])
        page = logged_in(browser, proxy.url, {"width": 1200, "height": 900})
        page.click("#conversations li")
        page.click('.tabs button[data-tab="pages"]')
        page.wait_for_selector("#pages tbody tr")
        text = page.inner_text("#pages")
        assert "<U+202E>txt.exe" in text and "<U+2066>isolated<U+2069>" in text
        everything = page.evaluate("document.body.textContent")
        assert not any(c in everything for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2069")
