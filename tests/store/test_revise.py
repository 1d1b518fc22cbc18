"""`revise_pages` (a summary a model wrote later, stored over the extractive one), against
every backend."""

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


async def test_a_revised_page_is_read_back_searched_and_kept_to_its_conversation(
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

    written = _written(summary, "The offsite in Lisbon is budgeted at 4,000 EUR.")
    replaced = await store.revise_pages(T, "c1", [written, _written(_summary(9, "x"), "y")])

    assert replaced == 1  # seg_9 was never stored: not added
    assert (await store.get_pages(path, ["seg_0"]))["seg_0"] == written
    hits = await store.search(path, "Lisbon budget")
    assert [h.page for h in hits] == [written]
    assert (await store.get_pages(path, ["seg_9"])) == {}
    other = await store.get_pages(await store.path(T, "c2"), ["seg_0"])
    assert other["seg_0"] == summary
    other_tenant = await store.get_pages(await store.path("tenant-b", "c1"), ["seg_0"])
    assert other_tenant["seg_0"] == summary


async def test_revising_nothing_or_an_unknown_conversation_changes_nothing(
    store: PageStore,
) -> None:
    assert await store.revise_pages(T, "nowhere", [_summary(0, "a b c")]) == 0
    assert await store.revise_pages(T, "nowhere", []) == 0
