"""How PostgreSQL runs the search: by the postings index, whatever the planner knows.

A new deployment's tables have no statistics until autovacuum analyzes them, and asyncpg's
prepared statements switch to a generic plan after five runs. The search must read the
query terms' postings by index in both cases: the join of the terms, the path's spans and
the postings was planned as a scan of every posting of the tenant, which made a VM turn at
1,000 turns 23 ms slower instead of 7 (benchmarks/vm_turn.py on PostgreSQL;
proxy.store.postgres_search).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.store import open_store
from proxy.store.postgres import PostgresStore
from proxy.store.postgres_search import SEARCH_SQL, search_args
from proxy.vm.bm25 import query_terms

from .conftest import make_page, postgres_url

pytestmark = pytest.mark.postgres

T = "tenant-a"
# SEARCH_SQL's parameters, $1 to $8 (postgres_search.search_args).
_ARG_TYPES = ("text", "text[]", "int[]", "bigint[]", "text[]", "text[]", "text", "bigint")
WORDS = "tram castle river bridge market garden museum harbour station tower".split()


@pytest.fixture
async def store() -> AsyncIterator[PostgresStore]:
    url = postgres_url()
    if not url:
        pytest.skip("VM_TEST_POSTGRES_URL is not set: no PostgreSQL to test against")
    sep = "&" if "?" in url else "?"
    try:
        opened = await open_store(f"{url}{sep}schema=vmtest_{uuid.uuid4().hex[:12]}")
    except OSError as exc:
        pytest.skip(f"PostgreSQL at VM_TEST_POSTGRES_URL is unreachable: {exc}")
    assert isinstance(opened, PostgresStore)
    try:
        yield opened
    finally:
        await opened.drop_schema()
        await opened.close()


def _scans(plan: Any, relation: str) -> list[str]:
    """The node types of `plan` (EXPLAIN's JSON) that read `relation`."""
    found: list[str] = []
    if isinstance(plan, dict):
        if plan.get("Relation Name") == relation:
            found.append(str(plan.get("Node Type")))
        for value in plan.values():
            found.extend(_scans(value, relation))
    elif isinstance(plan, list):
        for value in plan:
            found.extend(_scans(value, relation))
    return found


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_the_search_reads_postings_by_index_on_tables_never_analyzed(
    store: PostgresStore, plan_mode: str
) -> None:
    pages = [make_page(i, f"{WORDS[i % 10]} {WORDS[i * 7 % 10]} note {i}") for i in range(400)]
    await store.create_conversation(T, "root")
    await store.append(T, "root", pages, expected_version=0, new_length=400)
    await store.create_conversation(T, "fork", parent_id="root", fork_at=200)
    await store.append(T, "fork", [make_page(200, "tram again")], expected_version=0,
                       new_length=201)
    path = await store.path(T, "fork")
    args = search_args(path, query_terms("tram castle 5"), 100, None)
    async with store._pool.acquire() as conn:
        # The statement prepared by name, as a client library prepares it, and EXPLAIN of
        # its execution: a generic plan under force_generic_plan.
        values = [
            await conn.fetchval(f"SELECT quote_nullable($1::{kind})", value)
            for kind, value in zip(_ARG_TYPES, args, strict=True)
        ]
        await conn.execute(f"SET plan_cache_mode = {plan_mode}")
        try:
            await conn.execute("PREPARE search AS " + SEARCH_SQL)
            explained = await conn.fetchval(
                f"EXPLAIN (FORMAT JSON) EXECUTE search ({', '.join(values)})"
            )
        finally:
            await conn.execute("DEALLOCATE search")
            await conn.execute("RESET plan_cache_mode")
    plan = json.loads(explained)
    assert ("$1" in explained) == (plan_mode == "force_generic_plan")
    scans = _scans(plan, "page_terms")
    assert scans and "Seq Scan" not in scans, scans

    # And it finds what it should: the fork's own page and the parent's before the fork.
    hits = await store.search(path, "tram", limit=100)
    anchors = sorted(hit.page.anchor for hit in hits)
    assert anchors == [*(i for i in range(200) if "tram" in pages[i].text), 200]
