"""The reads the admin API and `vm-proxy inspect` make, on every backend: tenants,
conversations (paged, by session, by id), a fork tree, and the log of a range of turns."""

from __future__ import annotations

from proxy.store.base import PageStore
from proxy.vm.mutations import Mutation

from .conftest import FakeClock, make_page

A, B = "tenant-a", "tenant-b"


async def _conversation(
    store: PageStore, clock: FakeClock, tenant: str, conv: str, messages: int,
    *, state: dict[str, object] | None = None,
) -> None:
    clock.now += 10
    await store.create_conversation(tenant, conv)
    current = await store.get_conversation(tenant, conv)
    assert current is not None
    pages = [make_page(i, chain_hash=f"{conv}-{i}") for i in range(messages)]
    await store.append(tenant, conv, pages, expected_version=current.version,
                       new_length=messages, state=state or {"tokens": messages})


async def test_conversations_are_listed_newest_first_and_paged(
    store: PageStore, clock: FakeClock
) -> None:
    for n in range(5):
        await _conversation(store, clock, A if n % 2 else B, f"c{n}", n + 1)
    await store.bind_session(A, "support-42", "c3")
    rows = await store.list_conversations(limit=3)
    assert [r.conv_id for r in rows] == ["c4", "c3", "c2"]
    assert rows[1].tenant == A and rows[1].sessions == ("support-42",)
    assert rows[1].length == 4 and rows[1].state == {"tokens": 4}
    last = rows[-1]
    rest = await store.list_conversations(limit=3, before=(last.updated_at, last.conv_id))
    assert [r.conv_id for r in rest] == ["c1", "c0"]
    assert [r.conv_id for r in await store.list_conversations(tenant=A)] == ["c3", "c1"]
    assert [r.conv_id for r in await store.list_conversations(session="support-42")] == ["c3"]
    assert [r.tenant for r in await store.list_conversations(conv_id="c2")] == [B]
    assert await store.list_conversations(session="nobody") == []


async def test_tenants_are_counted(store: PageStore, clock: FakeClock) -> None:
    await _conversation(store, clock, A, "c1", 1)
    await _conversation(store, clock, B, "c2", 1)
    await _conversation(store, clock, B, "c3", 1)
    tenants = await store.list_tenants()
    assert [(t.tenant, t.conversations) for t in tenants] == [(B, 2), (A, 1)]
    assert tenants[0].last_used == clock.now


async def test_a_fork_tree_is_read_from_its_root(store: PageStore, clock: FakeClock) -> None:
    await _conversation(store, clock, A, "root", 6)
    await store.create_conversation(A, "edit", parent_id="root", fork_at=3)
    await store.create_conversation(A, "regen", parent_id="root", fork_at=5)
    await store.create_conversation(A, "deeper", parent_id="edit", fork_at=4)
    await store.create_conversation(B, "other", parent_id=None)
    await store.bind_session(A, "s", "edit")
    tree = await store.conversation_tree(A, "root")
    assert [(n.conv_id, n.parent_id, n.fork_at) for n in tree] == [
        ("root", None, 0), ("edit", "root", 3), ("regen", "root", 5), ("deeper", "edit", 4),
    ]
    assert tree[1].sessions == ("s",)
    assert [n.conv_id for n in await store.conversation_tree(A, "edit")] == ["edit", "deeper"]
    assert await store.conversation_tree(B, "root") == []
    assert len(await store.conversation_tree(A, "root", limit=2)) == 2


async def test_the_log_of_a_range_of_turns(store: PageStore, clock: FakeClock) -> None:
    await _conversation(store, clock, A, "c1", 1)
    for turn in range(6):
        conv = await store.get_conversation(A, "c1")
        assert conv is not None
        events = [Mutation(turn, "turn", "", detail=f'{{"n": {turn}}}', at=1.0),
                  Mutation(turn, "fault", f"msg_{turn}", level=0, at=2.0)]
        await store.update_state(A, "c1", expected_version=conv.version, state={},
                                 mutations=events)
    found = await store.mutations_between(A, "c1", 2, 4)
    assert [(m.turn, m.event) for m in found] == [
        (2, "turn"), (2, "fault"), (3, "turn"), (3, "fault"), (4, "turn"), (4, "fault"),
    ]
    assert found[0].detail == '{"n": 2}' and found[1].level == 0
    assert await store.mutations_between(B, "c1", 0, 10) == []
