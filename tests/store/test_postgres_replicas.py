"""PostgreSQL specifics: several replicas (stores with their own pools) on one database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from proxy.store import open_store
from proxy.store.base import PageStore, VersionConflict
from proxy.store.postgres import PostgresStore, parse_postgres_url
from proxy.store.postgres_append import APPEND_SQL, append_args

from .conftest import make_page, postgres_url

pytestmark = pytest.mark.postgres

T = "tenant-a"


def test_our_options_are_taken_out_of_the_dsn() -> None:
    dsn, options = parse_postgres_url(
        "postgresql://u@h:5432/db?schema=s1&sslmode=disable&pool_max=3"
    )
    assert dsn == "postgresql://u@h:5432/db?sslmode=disable"
    assert options == {"schema": "s1", "pool_max": "3"}


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[PageStore, PageStore]]:
    url = postgres_url()
    if not url:
        pytest.skip("VM_TEST_POSTGRES_URL is not set: no PostgreSQL to test against")
    schema = f"vmtest_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in url else "?"
    try:
        # Both start at once on an empty schema: the migration lock makes them take turns.
        first, second = await asyncio.gather(
            open_store(f"{url}{sep}schema={schema}"), open_store(f"{url}{sep}schema={schema}")
        )
    except OSError as exc:
        pytest.skip(f"PostgreSQL at VM_TEST_POSTGRES_URL is unreachable: {exc}")
    try:
        yield first, second
    finally:
        assert isinstance(first, PostgresStore)
        await first.drop_schema()
        await first.close()
        await second.close()


async def test_a_lock_held_by_one_replica_holds_off_the_other(
    replicas: tuple[PageStore, PageStore],
) -> None:
    one, two = replicas
    async with one.lock(T, "a"):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                async with two.lock(T, "a"):
                    pass
        async with asyncio.timeout(2):  # another conversation does not wait
            async with two.lock(T, "b"):
                pass
    async with asyncio.timeout(2):
        async with two.lock(T, "a"):
            pass


async def test_a_cancelled_lock_holder_releases_the_lock(
    replicas: tuple[PageStore, PageStore],
) -> None:
    one, two = replicas
    held = asyncio.Event()

    async def hold_forever() -> None:
        async with one.lock(T, "a"):
            held.set()
            await asyncio.Event().wait()

    holder = asyncio.create_task(hold_forever())
    await held.wait()
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    async with asyncio.timeout(2):
        async with two.lock(T, "a"):
            pass


async def test_two_replicas_serve_one_conversation_alternately(
    replicas: tuple[PageStore, PageStore],
) -> None:
    one, two = replicas
    await one.create_conversation(T, "c")

    async def request(store: PageStore, n: int) -> None:
        async with store.lock(T, "c"):
            conv = await store.get_conversation(T, "c")
            assert conv is not None
            await store.append(
                T, "c", [make_page(conv.length, f"request {n}")],
                expected_version=conv.version, new_length=conv.length + 1,
            )

    await asyncio.gather(*(request(one if n % 2 else two, n) for n in range(40)))
    conv = await two.get_conversation(T, "c")
    assert conv is not None and (conv.length, conv.version) == (40, 40)
    pages = await one.pages_in_range(await one.path(T, "c"), 0, 100)
    assert [p.page_id for p in pages] == [f"msg_{n}" for n in range(40)]
    assert sorted(p.text for p in pages) == sorted(f"request {n}" for n in range(40))


async def test_without_the_lock_the_version_check_refuses_the_stale_writer(
    replicas: tuple[PageStore, PageStore],
) -> None:
    one, two = replicas
    await one.create_conversation(T, "c")
    results = await asyncio.gather(
        one.append(T, "c", [make_page(0, "from one")], expected_version=0, new_length=1),
        two.append(T, "c", [make_page(0, "from two")], expected_version=0, new_length=1),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Conversation", "VersionConflict"]
    assert any(isinstance(r, VersionConflict) for r in results)
    pages = await two.get_pages(await two.path(T, "c"), ["msg_0"])
    winner = "from one" if not isinstance(results[0], VersionConflict) else "from two"
    assert pages["msg_0"].text == winner


async def test_gc_removes_the_search_postings(replicas: tuple[PageStore, PageStore]) -> None:
    one, _ = replicas
    assert isinstance(one, PostgresStore)
    for conv in ("gone", "kept"):
        await one.create_conversation(T, conv)
        await one.append(T, conv, [make_page(0, "tram to the castle")], expected_version=0,
                         new_length=1)
    count = "SELECT count(*) FROM page_terms WHERE conv_id = $1"
    assert await one._fetchval(count, "gone") > 0
    await one._pool.execute("UPDATE conversations SET updated_at = 0 WHERE conv_id = 'gone'")
    assert await one.gc(older_than=1.0) == 1
    assert await one._fetchval(count, "gone") == 0
    assert await one._fetchval(count, "kept") > 0


async def test_an_append_not_yet_durable_is_committed_for_the_other_replica_at_once(
    replicas: tuple[PageStore, PageStore],
) -> None:
    # durable=False (a whole-history request's messages) commits without waiting for the
    # WAL flush: committed all the same, and only for that statement's transaction.
    one, two = replicas
    assert isinstance(one, PostgresStore)
    url = postgres_url()
    assert url is not None
    sep = "&" if "?" in url else "?"
    single = await open_store(f"{url}{sep}schema={one.schema}&pool_max=1")
    assert isinstance(single, PostgresStore)
    # What an operator may set for the proxy's role (a synchronous standby's apply): kept
    # by a durable append, and by the connection after a non-durable one.
    await single._pool.execute("SET synchronous_commit = remote_apply")
    try:
        await single.create_conversation(T, "c")
        row = await single.append(T, "c", [make_page(0, "tram to the castle")],
                                  expected_version=0, new_length=1, durable=False)
        assert (await two.get_conversation(T, "c")) == row
        pages = await two.get_pages(await two.path(T, "c"), ["msg_0"])
        assert pages["msg_0"].text == "tram to the castle"
        assert await single._fetchval("SHOW synchronous_commit") == "remote_apply"
        async with single._pool.acquire() as conn, conn.transaction():
            # A durable append's own setting, seen from inside its transaction.
            await conn.fetchrow(APPEND_SQL, *append_args(
                T, "c", [make_page(1, "and back")], 1, [], 2, None, 0.0
            ))
            assert await conn.fetchval("SHOW synchronous_commit") == "remote_apply"
        assert (await two.get_conversation(T, "c")).version == 2  # type: ignore[union-attr]
    finally:
        await single.close()
