"""`put_pages` (what a model wrote later: a summary over the extractive one, new claims),
against every backend."""

from __future__ import annotations

import dataclasses

from proxy.store.base import PageStore
from proxy.vm.pages import Page, PageKind

from .conftest import make_page

T = "tenant-a"


def _summary(number: int, text: str) -> Page:
    return make_page(number, text, prefix="seg", anchor=1, role="summary", kind=PageKind.SUMMARY)


def _written(page: Page, level2: str) -> Page:
    renderings = (page.renderings[0], page.renderings[1], level2, page.renderings[3])
    extra = {**page.extra, "summarizer": "gpt-test", "summarises": ["msg_0", "msg_1"]}
    return dataclasses.replace(page, renderings=renderings, extra=extra)


async def test_put_pages_replace_and_add_without_touching_the_conversation_row(
    store: PageStore,
) -> None:
    summary = _summary(0, "turns 0-1: the Lisbon offsite budget")
    for conv in ("c1", "c2"):
        await store.create_conversation(T, conv)
        await store.append(T, conv, [make_page(0), make_page(1), summary],
                           expected_version=0, new_length=2)
    await store.create_conversation("tenant-b", "c1")
    await store.append("tenant-b", "c1", [summary], expected_version=0, new_length=2)
    path = await store.path(T, "c1")
    await store.get_pages(path, ["seg_0"])  # a cache in front must not keep the old one

    before = await store.get_conversation(T, "c1")
    written = _written(summary, "The offsite in Lisbon is budgeted at 4,000 EUR.")
    claim = make_page(7, "The offsite venue is Quinta da Regaleira.", prefix="claim",
                      anchor=1, kind=PageKind.CLAIM, covers=("msg_1",))

    assert await store.put_pages(T, "c1", [written, claim]) == 2

    assert await store.get_conversation(T, "c1") == before  # version, length, state
    got = await store.get_pages(path, ["seg_0", "claim_7"])
    assert got == {"seg_0": written, "claim_7": claim}
    assert [h.page for h in await store.search(path, "Lisbon budget")] == [written]
    assert [h.page for h in await store.search(path, "Regaleira venue")] == [claim]
    assert [p.page_id for p in await store.pages_in_range(path, 0, 2, prefixes=("claim",))] == [
        "claim_7"]
    other = await store.get_pages(await store.path(T, "c2"), ["seg_0", "claim_7"])
    assert other == {"seg_0": summary}
    assert await store.search(await store.path(T, "c2"), "Regaleira") == []
    other_tenant = await store.get_pages(await store.path("tenant-b", "c1"), ["seg_0"])
    assert other_tenant["seg_0"] == summary


async def test_nothing_is_put_on_an_unknown_conversation(store: PageStore) -> None:
    assert await store.put_pages(T, "nowhere", [_summary(0, "a b c")]) == 0
    assert await store.put_pages(T, "nowhere", []) == 0
    await store.create_conversation(T, "c1")
    assert await store.put_pages("tenant-b", "c1", [_summary(0, "a b c")]) == 0
    assert await store.get_pages(await store.path(T, "c1"), ["seg_0"]) == {}
