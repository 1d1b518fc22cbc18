"""One behavioural suite, run against every backend (see conftest.BACKEND_NAMES)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from proxy.store.base import PageStore, Path, PathSpan, UnknownConversation, VersionConflict
from proxy.vm.mutations import Mutation
from proxy.vm.pages import Modality, Page, PageKind

from .conftest import FakeClock, make_page

T = "tenant-a"


async def _append(store: PageStore, conv: str, pages: Sequence[Page], *, tenant: str = T) -> None:
    current = await store.get_conversation(tenant, conv)
    assert current is not None
    length = max([current.length, *(p.anchor + 1 for p in pages if p.is_message)])
    await store.append(tenant, conv, pages, expected_version=current.version, new_length=length)


async def _conversation_with(store: PageStore, pages: Sequence[Page], conv: str = "c1") -> Path:
    await store.create_conversation(T, conv)
    await _append(store, conv, pages)
    return await store.path(T, conv)


# -- round trips -----------------------------------------------------------------------------


async def test_every_page_field_round_trips(store: PageStore) -> None:
    tool_call = make_page(
        1,
        "calling get_weather for Lisbon",
        role="assistant",
        kind=PageKind.PROCEDURE,
        message={
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
                }
            ],
        },
        tool_call_ids=("call_1",),
        importance=0.8,
        created_at=1234.5,
    )
    image = make_page(
        2,
        "Olá — 東京 🚀 a photo of a yellow tram",
        modality=Modality.IMAGE,
        message={
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                },
            ],
        },
        extra={"source": "client", "sizes": [1, 2.5, None], "nested": {"ok": True}},
    )
    claim = make_page(
        0, "The user lives in Lisbon.", prefix="claim", anchor=2, kind=PageKind.CLAIM,
        covers=("msg_1", "msg_2"), hint="user lives in Lisbon",
    )
    path = await _conversation_with(store, [tool_call, image, claim])
    got = await store.get_pages(path, ["msg_1", "msg_2", "claim_0", "msg_9"])
    assert got == {"msg_1": tool_call, "msg_2": image, "claim_0": claim}
    assert isinstance(got["msg_1"].covers, tuple) and got["msg_1"].kind is PageKind.PROCEDURE


async def test_conversation_lifecycle_and_versions(store: PageStore) -> None:
    assert await store.get_conversation(T, "c1") is None
    assert await store.conversation_version(T, "c1") is None
    created = await store.create_conversation(T, "c1")
    assert (created.version, created.length, created.parent_id, created.state) == (0, 0, None, {})
    assert await store.create_conversation(T, "c1") == created  # idempotent

    after = await store.append(
        T, "c1", [make_page(0), make_page(1)], expected_version=0, new_length=2,
        state={"table": {"msg_0": {"level": 1}}},
    )
    assert (after.version, after.length) == (1, 2)
    assert after.state == {"table": {"msg_0": {"level": 1}}}
    assert await store.get_conversation(T, "c1") == after
    assert await store.conversation_version(T, "c1") == 1

    with pytest.raises(VersionConflict):
        await store.append(T, "c1", [make_page(2)], expected_version=0, new_length=3)
    path = await store.path(T, "c1")
    assert await store.get_pages(path, ["msg_2"]) == {}  # the refused append stored nothing

    updated = await store.update_state(T, "c1", expected_version=1, state={"turn": 3})
    assert (updated.version, updated.length, updated.state) == (2, 2, {"turn": 3})
    assert await store.get_conversation(T, "c1") == updated
    kept = await store.append(T, "c1", [make_page(2)], expected_version=2, new_length=3)
    assert (kept.version, kept.length, kept.state) == (3, 3, {"turn": 3})  # no state: kept
    assert await store.get_conversation(T, "c1") == kept
    with pytest.raises(VersionConflict):
        await store.update_state(T, "c1", expected_version=1, state={})
    with pytest.raises(UnknownConversation):
        await store.update_state(T, "nope", expected_version=0, state={})
    with pytest.raises(UnknownConversation):
        await store.append(T, "nope", [make_page(0)], expected_version=0, new_length=1)


async def test_retried_append_keeps_the_stored_page(store: PageStore) -> None:
    original = make_page(0, "the original text")
    path = await _conversation_with(store, [original])
    await _append(store, "c1", [make_page(0, "a different text"), make_page(1)])
    got = await store.get_pages(path, ["msg_0", "msg_1"])
    assert got["msg_0"] == original and set(got) == {"msg_0", "msg_1"}
    assert [h.page.page_id for h in await store.search(path, "different")] == []


async def test_lookup_hashes(store: PageStore) -> None:
    await _conversation_with(store, [make_page(0), make_page(1), make_page(2, chain_hash="zz")])
    found = await store.lookup_hashes(T, ["h0", "h1", "zz", "unknown"])
    assert found == {"h0": ("c1", 0), "h1": ("c1", 1), "zz": ("c1", 2)}
    assert await store.lookup_hashes("tenant-b", ["h0", "h1", "zz"]) == {}
    assert await store.lookup_hashes(T, []) == {}


async def test_open_root_makes_the_root_of_a_history_none_of_which_is_stored(
    store: PageStore,
) -> None:
    """A new chat's conversation: created (not waited for) when none of its messages is
    stored; None when any is, with no row made; an existing row returned as it is."""
    await _conversation_with(store, [make_page(0), make_page(1)])
    assert await store.open_root(T, "r1", ["h1", "new"]) is None
    assert await store.get_conversation(T, "r1") is None
    root = await store.open_root(T, "r2", ["n0", "n1"])
    assert root is not None
    assert (root.conv_id, root.parent_id, root.length, root.version) == ("r2", None, 0, 0)
    assert await store.get_conversation(T, "r2") == root
    # Appended on without waiting (a state: SQLite defers such an append): its hashes are
    # stored for the next opening at once.
    await store.append(T, "r2", [make_page(0, chain_hash="n0")], expected_version=0,
                       new_length=1, state={}, durable=False)
    assert await store.open_root(T, "r3", ["n0"]) is None
    stored = await store.open_root(T, "r2", ["elsewhere"])
    assert stored is not None and (stored.length, stored.version) == (1, 1)
    other = await store.open_root("tenant-b", "r1", ["h0", "h1"])  # another tenant's hashes
    assert other is not None and other.tenant == "tenant-b"


# -- branches --------------------------------------------------------------------------------


async def _forked(store: PageStore) -> tuple[Path, Path]:
    """c1: msg_0..msg_3. c2 forks c1 at 2 (edit of msg_2) and adds its own msg_2, msg_3."""
    await _conversation_with(store, [make_page(n, f"trunk {n} lisbon") for n in range(4)])
    child = await store.create_conversation(T, "c2", parent_id="c1", fork_at=2)
    assert (child.parent_id, child.fork_at) == ("c1", 2)
    await _append(store, "c2", [make_page(n, f"branch {n} lisbon", chain_hash=f"b{n}")
                                for n in (2, 3)])
    return await store.path(T, "c1"), await store.path(T, "c2")


async def test_fork_paths(store: PageStore) -> None:
    trunk, branch = await _forked(store)
    assert trunk == Path(T, (PathSpan("c1", 0, None),))
    assert branch == Path(T, (PathSpan("c2", 2, None), PathSpan("c1", 0, 2)))
    await store.create_conversation(T, "c3", parent_id="c2", fork_at=1)  # below c2's fork
    assert await store.path(T, "c3") == Path(T, (PathSpan("c3", 1, None), PathSpan("c1", 0, 1)))
    with pytest.raises(UnknownConversation):
        await store.path(T, "missing")
    with pytest.raises(UnknownConversation):
        await store.create_conversation(T, "c9", parent_id="missing", fork_at=1)



async def test_a_create_not_waited_for_is_what_reads_find(
    store: PageStore, clock: FakeClock
) -> None:
    """`durable=False` (a whole-history request's conversation or fork): every backend
    takes it; the row returned, the parent's touch and the append on that row are what
    reads find, and a create of a stored conversation returns it as stored."""
    await _conversation_with(store, [make_page(n, f"trunk {n}") for n in range(3)])
    clock.now += 60
    fork = await store.create_conversation(T, "c2", parent_id="c1", fork_at=2, durable=False)
    assert (fork.parent_id, fork.fork_at, fork.length, fork.version) == ("c1", 2, 2, 0)
    after = await store.append(T, "c2", [make_page(2, "branch 2", chain_hash="b2")],
                               expected_version=0, new_length=3, state={"n": 1}, durable=False)
    assert await store.get_conversation(T, "c2") == after
    assert await store.path(T, "c2") == Path(T, (PathSpan("c2", 2, None), PathSpan("c1", 0, 2)))
    again = await store.create_conversation(T, "c2", parent_id="c1", fork_at=2, durable=False)
    assert again == after  # idempotent: the stored row, not an empty one
    (parent,) = await store.list_conversations(tenant=T, conv_id="c1")
    assert parent.updated_at == clock.now  # forking used it
    root = await store.create_conversation(T, "c3", durable=False)
    assert (root.parent_id, root.length, root.version, root.state) == (None, 0, 0, {})
    assert await store.get_conversation(T, "c3") == root


async def test_branch_isolation(store: PageStore) -> None:
    trunk, branch = await _forked(store)
    ids = ["msg_0", "msg_1", "msg_2", "msg_3"]
    on_trunk = await store.get_pages(trunk, ids)
    on_branch = await store.get_pages(branch, ids)
    assert [p.text for p in on_trunk.values()] == [f"trunk {n} lisbon" for n in range(4)]
    assert [p.text for p in on_branch.values()] == [
        "trunk 0 lisbon", "trunk 1 lisbon", "branch 2 lisbon", "branch 3 lisbon",
    ]
    in_range = await store.pages_in_range(branch, 1, 10)
    assert [p.text for p in in_range] == ["trunk 1 lisbon", "branch 2 lisbon", "branch 3 lisbon"]
    hits = await store.search(branch, "lisbon", limit=10)
    assert sorted(h.page.text for h in hits) == sorted(p.text for p in on_branch.values())
    assert await store.search(trunk, "branch", limit=10) == []


async def test_pages_in_range_orders_and_filters_by_prefix(store: PageStore) -> None:
    pages = [
        make_page(0, prefix="seg", anchor=3, kind=PageKind.SUMMARY),
        make_page(3),
        make_page(0, prefix="claim", anchor=1, kind=PageKind.CLAIM),
        make_page(1),
        make_page(0),
        make_page(2),
    ]
    path = await _conversation_with(store, pages)
    ids = [p.page_id for p in await store.pages_in_range(path, 0, 4, prefixes=("msg", "seg",
                                                                                 "claim"))]
    assert ids == ["msg_0", "msg_1", "claim_0", "msg_2", "msg_3", "seg_0"]
    assert [p.page_id for p in await store.pages_in_range(path, 1, 3)] == ["msg_1", "msg_2"]
    assert await store.pages_in_range(path, 3, 3) == []


async def test_ranges_read_again_are_the_same(store: PageStore) -> None:
    """A range read a second time (a caching store answers from what it read first) is the
    same: across a fork, on a path cut short, past the stored end, and after growth."""
    trunk, branch = await _forked(store)
    cut = Path(T, (PathSpan("c2", 2, 3), PathSpan("c1", 0, 2)))  # the branch up to its msg_2
    cases = [(branch, 0, 4), (branch, 1, 10), (trunk, 0, 4), (trunk, 2, 3), (cut, 0, 4),
             (branch, 3, 3), (branch, 5, 9), (cut, 2, 3)]

    async def read() -> list[list[str]]:
        return [[p.text for p in await store.pages_in_range(path, lo, hi)]
                for path, lo, hi in cases]

    first = await read()
    assert await read() == first
    assert first[1] == ["trunk 1 lisbon", "branch 2 lisbon", "branch 3 lisbon"]
    assert first[4] == ["trunk 0 lisbon", "trunk 1 lisbon", "branch 2 lisbon"]
    assert first[5] == first[6] == []
    await _append(store, "c2", [make_page(4, "branch 4 lisbon", chain_hash="b4")])
    grown = await store.pages_in_range(branch, 0, 10)
    assert [p.text for p in grown] == [*first[0], "branch 4 lisbon"]
    assert [p.text for p in await store.pages_in_range(cut, 0, 10)] == first[4]


async def test_reads_issued_together_each_get_their_own_answer(store: PageStore) -> None:
    trunk, branch = await _forked(store)
    pages, in_range, hits, missing, found, conv = await asyncio.gather(
        store.get_pages(branch, ["msg_2", "msg_0"]),
        store.pages_in_range(trunk, 1, 3),
        store.search(branch, "branch", limit=5),
        store.path(T, "missing"),
        store.lookup_hashes(T, ["b3"]),
        store.get_conversation(T, "c2"),
        return_exceptions=True,
    )
    assert isinstance(pages, dict) and [p.text for p in pages.values()] == [
        "branch 2 lisbon", "trunk 0 lisbon"]
    assert isinstance(in_range, list) and [p.text for p in in_range] == [
        "trunk 1 lisbon", "trunk 2 lisbon"]
    assert isinstance(hits, list) and {h.page.text for h in hits} == {
        "branch 2 lisbon", "branch 3 lisbon"}
    assert isinstance(missing, UnknownConversation)
    assert found == {"b3": ("c2", 3)}
    assert not isinstance(conv, BaseException) and conv is not None and conv.length == 4


# -- tenants ---------------------------------------------------------------------------------


async def test_guessed_ids_of_another_tenant_are_absent(store: PageStore) -> None:
    await _conversation_with(store, [make_page(0, "secret lisbon address"), make_page(1)])
    await store.bind_session(T, "my-session", "c1")
    await store.create_conversation("tenant-b", "own")
    # Tenant B names tenant A's conversation and page ids outright.
    with pytest.raises(UnknownConversation):
        await store.path("tenant-b", "c1")
    forged = Path("tenant-b", (PathSpan("c1", 0, None),))
    assert await store.get_pages(forged, ["msg_0", "msg_1"]) == {}
    assert await store.pages_in_range(forged, 0, 100) == []
    assert await store.search(forged, "secret lisbon") == []
    assert await store.get_conversation("tenant-b", "c1") is None
    assert await store.conversation_version("tenant-b", "c1") is None
    assert await store.mutations("tenant-b", "c1") == []
    assert await store.resolve_session("tenant-b", "my-session") is None
    assert await store.resolve_session(T, "my-session") == "c1"
    with pytest.raises(UnknownConversation):
        await store.create_conversation("tenant-b", "fork", parent_id="c1", fork_at=1)
    with pytest.raises(UnknownConversation):
        await store.append("tenant-b", "c1", [make_page(5)], expected_version=1, new_length=6)
    # A's own view is intact.
    assert set(await store.get_pages(await store.path(T, "c1"), ["msg_0", "msg_1"])) == {
        "msg_0", "msg_1",
    }


async def test_same_ids_in_two_tenants_stay_apart(store: PageStore) -> None:
    for tenant in (T, "tenant-b"):
        await store.create_conversation(tenant, "c1")
        await _append(store, "c1", [make_page(0, f"{tenant} text")], tenant=tenant)
    for tenant in (T, "tenant-b"):
        pages = await store.get_pages(await store.path(tenant, "c1"), ["msg_0"])
        assert pages["msg_0"].text == f"{tenant} text"
        assert await store.lookup_hashes(tenant, ["h0"]) == {"h0": ("c1", 0)}


# -- search ----------------------------------------------------------------------------------


FILLER = [f"cats and dogs play outside number {n}" for n in range(12)]


async def test_search_ranks_by_bm25(store: PageStore) -> None:
    texts = [
        "lisbon weather today",  # msg_0: both terms
        "lisbon tram tickets",  # msg_1: the rarer term
        "weather notes here",  # msg_2: the commoner term
        "weather again tomorrow",  # msg_3
        "weather forecast rain",  # msg_4
        *FILLER,
    ]
    path = await _conversation_with(store, [make_page(n, t) for n, t in enumerate(texts)])
    hits = await store.search(path, "Lisbon weather?", limit=10)
    assert [h.page.page_id for h in hits[:2]] == ["msg_0", "msg_1"]
    assert {h.page.page_id for h in hits[2:]} == {"msg_2", "msg_3", "msg_4"}
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    assert len(await store.search(path, "weather", limit=2)) == 2
    assert await store.search(path, "submarine") == []
    assert await store.search(path, "the and of") == []  # stop words only


async def test_search_prefers_frequent_term_in_short_page(store: PageStore) -> None:
    texts = [
        "tram " + " ".join(f"word{n}" for n in range(30)),
        "tram tram to the castle",
        *FILLER,
    ]
    path = await _conversation_with(store, [make_page(n, t) for n, t in enumerate(texts)])
    assert [h.page.page_id for h in await store.search(path, "tram")] == ["msg_1", "msg_0"]


async def test_search_matches_hint_and_identifier_parts(store: PageStore) -> None:
    pages = [
        make_page(0, "the config loader", hint="load_settings reads toml"),
        make_page(1, "unrelated words"),
        *[make_page(n + 2, t) for n, t in enumerate(FILLER)],
    ]
    path = await _conversation_with(store, pages)
    assert [h.page.page_id for h in await store.search(path, "load_settings")] == ["msg_0"]
    assert [h.page.page_id for h in await store.search(path, "settings")] == ["msg_0"]


async def test_search_modality_filter(store: PageStore) -> None:
    pages = [
        make_page(0, "a yellow tram in lisbon"),
        make_page(1, "photo: yellow tram on a hill", modality=Modality.IMAGE),
        *[make_page(n + 2, t) for n, t in enumerate(FILLER)],
    ]
    path = await _conversation_with(store, pages)
    assert {h.page.page_id for h in await store.search(path, "yellow tram")} == {"msg_0", "msg_1"}
    image_hits = await store.search(path, "yellow tram", modality=Modality.IMAGE)
    assert [h.page.page_id for h in image_hits] == ["msg_1"]
    assert await store.search(path, "yellow tram", modality=Modality.AUDIO) == []


# -- concurrency -----------------------------------------------------------------------------


async def test_fifty_concurrent_appenders_lose_and_duplicate_nothing(store: PageStore) -> None:
    await store.create_conversation(T, "c1")

    async def one_request(n: int) -> None:
        async with store.lock(T, "c1"):
            conv = await store.get_conversation(T, "c1")
            assert conv is not None
            page = make_page(conv.length, f"request {n}")
            await store.append(
                T, "c1", [page], expected_version=conv.version, new_length=conv.length + 1,
                mutations=[Mutation(conv.length, "create", page.page_id)],
            )

    await asyncio.gather(*(one_request(n) for n in range(50)))
    conv = await store.get_conversation(T, "c1")
    assert conv is not None and (conv.version, conv.length) == (50, 50)
    path = await store.path(T, "c1")
    pages = await store.pages_in_range(path, 0, 1000)
    assert [p.page_id for p in pages] == [f"msg_{n}" for n in range(50)]
    assert sorted(p.text for p in pages) == sorted(f"request {n}" for n in range(50))
    assert len(await store.mutations(T, "c1")) == 50


async def test_a_held_lock_does_not_delay_another_conversation(store: PageStore) -> None:
    await store.create_conversation(T, "a")
    await store.create_conversation(T, "b")
    held, release = asyncio.Event(), asyncio.Event()

    async def hold_a() -> None:
        async with store.lock(T, "a"):
            held.set()
            await release.wait()

    holder = asyncio.create_task(hold_a())
    await held.wait()
    async with asyncio.timeout(2):
        async with store.lock(T, "b"):
            await store.append(T, "b", [make_page(0)], expected_version=0, new_length=1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            async with store.lock(T, "a"):
                pass
    release.set()
    await holder
    async with asyncio.timeout(2):
        async with store.lock(T, "a"):
            pass


# -- log, sessions, gc -----------------------------------------------------------------------


async def test_mutations_per_turn(store: PageStore, clock: FakeClock) -> None:
    await store.create_conversation(T, "c1")
    first = [Mutation(1, "create", "msg_0"), Mutation(1, "map", "msg_0", level=0)]
    second = [Mutation(2, "evict", "msg_0", level=None, detail="budget", at=5.0),
              Mutation(2, "compress", "msg_0", level=2)]
    conv = await store.append(T, "c1", [make_page(0)], expected_version=0, new_length=1,
                              mutations=first)
    await store.update_state(T, "c1", expected_version=conv.version, state={}, mutations=second)
    stamped = [Mutation(1, "create", "msg_0", at=clock.now),
               Mutation(1, "map", "msg_0", level=0, at=clock.now)]
    assert await store.mutations(T, "c1", turn=1) == stamped
    assert await store.mutations(T, "c1", turn=2) == [second[0], Mutation(
        2, "compress", "msg_0", level=2, at=clock.now)]
    assert len(await store.mutations(T, "c1")) == 4
    assert await store.mutations(T, "c1", turn=3) == []


async def test_sessions(store: PageStore) -> None:
    assert await store.resolve_session(T, "s") is None
    await store.create_conversation(T, "c1")
    await store.create_conversation(T, "c2")
    await store.bind_session(T, "s", "c1")
    assert await store.resolve_session(T, "s") == "c1"
    await store.bind_session(T, "s", "c2")
    assert await store.resolve_session(T, "s") == "c2"


async def test_response_ids(store: PageStore) -> None:
    assert await store.find_response(T, "resp_1") is None
    await store.create_conversation(T, "c1")
    await store.remember_response(T, "resp_1", "c1", 4)
    assert await store.find_response(T, "resp_1") == ("c1", 4)
    assert await store.find_response("tenant-b", "resp_1") is None
    await store.remember_response(T, "resp_1", "c1", 6)  # moved: the latest write wins
    assert await store.find_response(T, "resp_1") == ("c1", 6)


@pytest.mark.parametrize("durable", [True, False])
async def test_an_append_records_the_response_id_it_answers(
    store: PageStore, durable: bool
) -> None:
    """The id rides in the append (one write): recorded at the new length, moved by a
    later one, and not recorded by an append refused as stale."""
    await store.create_conversation(T, "c1")
    await store.append(T, "c1", [make_page(0), make_page(1, role="assistant")],
                       expected_version=0, new_length=2, state={}, durable=durable,
                       response_id="resp_1")
    assert await store.find_response(T, "resp_1") == ("c1", 2)
    assert await store.find_response("tenant-b", "resp_1") is None
    with pytest.raises(VersionConflict):
        await store.append(T, "c1", [make_page(2)], expected_version=0, new_length=3,
                           state={}, durable=durable, response_id="resp_stale")
    assert await store.find_response(T, "resp_stale") is None
    await store.append(T, "c1", [make_page(2), make_page(3, role="assistant")],
                       expected_version=1, new_length=4, state={}, durable=durable,
                       response_id="resp_1")
    assert await store.find_response(T, "resp_1") == ("c1", 4)
    await store.append(T, "c1", [make_page(4)], expected_version=2, new_length=5)
    assert await store.find_response(T, "resp_1") == ("c1", 4)  # no id: none moved


async def test_gc_keeps_parents_of_live_children(store: PageStore, clock: FakeClock) -> None:
    await _forked(store)  # c1 (trunk) and c2 (forked from c1), both at t0
    await store.create_conversation(T, "lonely")
    await store.bind_session(T, "s", "lonely")
    await store.remember_response(T, "resp_lonely", "lonely", 0)
    t0 = clock.now
    clock.now += 100
    await _append(store, "c2", [make_page(4, "branch 4")])  # c2 stays live
    assert await store.gc(older_than=t0 + 50) == 1  # only "lonely": c1 is c2's parent
    assert await store.get_conversation(T, "lonely") is None
    assert await store.resolve_session(T, "s") is None
    assert await store.find_response(T, "resp_lonely") is None
    branch = await store.path(T, "c2")
    assert set(await store.get_pages(branch, ["msg_0", "msg_4"])) == {"msg_0", "msg_4"}

    assert await store.gc(older_than=clock.now + 1) == 2  # child first, then its parent
    for conv in ("c1", "c2"):
        assert await store.get_conversation(T, conv) is None
        assert await store.mutations(T, conv) == []
    assert await store.lookup_hashes(T, ["h0", "b2"]) == {}
    assert await store.search(branch, "lisbon") == []
    assert await store.get_pages(branch, ["msg_0"]) == {}
    assert await store.gc(older_than=clock.now + 1) == 0


async def test_search_reaches_past_better_matches_that_do_not_qualify(store: PageStore) -> None:
    # Many strong text matches and one weak image match: the image must still be found
    # when asked for, however the backend shortlists candidates.
    strong = [make_page(n, "tram tram tram ride") for n in range(30)]
    weak = make_page(30, "a long caption " + "word " * 40 + "tram", modality=Modality.IMAGE)
    path = await _conversation_with(store, [*strong, weak])
    hits = await store.search(path, "tram", limit=1, modality=Modality.IMAGE)
    assert [h.page.page_id for h in hits] == ["msg_30"]


async def test_search_reaches_past_a_parents_pages_beyond_the_fork(store: PageStore) -> None:
    # The parent's pages after the fork point match best but are not on the child's path.
    trunk = [make_page(n, "weak tram mention " + "filler " * 30) for n in range(2)]
    trunk += [make_page(n, "tram tram tram") for n in range(2, 40)]
    await _conversation_with(store, trunk, conv="p")
    await store.create_conversation(T, "k", parent_id="p", fork_at=2)
    await _append(store, "k", [make_page(2, "my own tram note " + "filler " * 30)])
    child = await store.path(T, "k")
    hits = await store.search(child, "tram", limit=3)
    assert sorted(h.page.page_id for h in hits) == ["msg_0", "msg_1", "msg_2"]
    assert (await store.get_pages(child, ["msg_2"]))["msg_2"].text.startswith("my own")
