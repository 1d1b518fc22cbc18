"""`immutable` records behave as the frozen dataclasses they replaced, but for assignment,
which mypy refuses instead (proxy.vm.records)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from proxy.store.base import Conversation, Path, PathSpan
from proxy.vm.pages import Modality, Page, PageKind


def _page(**changes: object) -> Page:
    page = Page(
        "msg_3", PageKind.TRANSCRIPT, Modality.TEXT, 3, 2, "user", ("hi", "hi", "hi", "m: hi"),
        (2, 2, 2, 2), "hi", "ab" * 16, {"role": "user", "content": "hi"},
    )
    return dataclasses.replace(page, **changes)


def test_records_compare_and_hash_by_their_fields():
    one = Path("t", (PathSpan("c1", 0, None), PathSpan("c0", 0, 4)))
    same = Path("t", (PathSpan("c1", 0, None), PathSpan("c0", 0, 4)))
    other = Path("t", (PathSpan("c1", 0, None),))
    assert one == same and hash(one) == hash(same)
    assert one != other
    assert {one: "found"}[same] == "found"


def test_a_record_holding_a_dict_is_not_hashable_as_before():
    with pytest.raises(TypeError):
        hash(_page())
    with pytest.raises(TypeError):
        hash(Conversation("t", "c", None, 0, 1, 1, {"hash": "x"}))


def test_records_keep_slots_defaults_replace_and_pickle():
    page = _page()
    assert not hasattr(page, "__dict__")
    assert page.extra == {} and page.extra is not _page().extra  # a fresh default each
    moved = dataclasses.replace(page, anchor=5)
    assert (moved.anchor, page.anchor) == (5, 3)
    assert pickle.loads(pickle.dumps(page)) == page
    assert copy.deepcopy(page) == page
    assert [f.name for f in dataclasses.fields(Page)][:3] == ["page_id", "kind", "modality"]
