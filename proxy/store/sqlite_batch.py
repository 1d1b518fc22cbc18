"""A group commit's short-chat writes, made together in a few statements (issue 15).

The SQLite writer runs the writes queued together in one transaction (group commit,
proxy.store.sqlite_calls), each in a savepoint of its own. A short chat's turn is one
deferred append of two lean pages, eight statements that way (the savepoint, the version
check, two pages, two chain hashes, the row, the release), and a new chat's deferred create
four more. Each statement gives the GIL up while SQLite runs it and must get it back
before the next, and the writer thread gets it back only when the event loop lets go: at
64 clients its rate was its hand-overs of the GIL, not its work, and the requests waited
for it (`room`). Written together, a run of such appends and creates takes the same
seven statements however long it is: one insert of the new conversations, one read of
every version the appends check, one insert of their chain hashes, one of their pages,
one update of the rows, in a savepoint. Should a statement fail (or a state not encode),
the savepoint is rolled back and the run's writes are made one by one, as without this,
each failing alone; should SQLite have rolled the whole transaction back (as an
interrupt, an I/O error, a full disk or memory may), every write of the run fails, as the
group's others do when its commit fails. Nothing escapes to kill the writer thread.

Taken together: an append of lean pages only, with a state and no mutation log or
response id (what proxy.loop.short_chat stores), and a deferred create of a conversation
with no parent (its row is not read back: nobody waits for it). Anything else in the group
runs on its own where it stands, in order; a create is not taken into a run that already
appends to its conversation, so every write still sees the ones queued before it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.store.base import Conversation, StoreError, UnknownConversation, VersionConflict
from proxy.store.codec import encode_page, encode_state
from proxy.store.sqlite_queries import INSERT_PAGES, PAGE_VALUES, page_row
from proxy.store.sqlite_threads import Job
from proxy.vm.lean import is_lean
from proxy.vm.pages import Page

# Rows a multi-row statement carries at most (its parameters stay far below SQLite's
# 32,766).
CHUNK = 256

RunEach = Callable[[list[Job[Any]]], None]


@dataclass(slots=True)
class _Append:
    job: Job[Any]
    tenant: str
    conv_id: str
    pages: Sequence[Page]
    expected: int
    new_length: int
    state: Mapping[str, Any]


def run_group(
    conn: sqlite3.Connection,
    jobs: list[Job[Any]],
    *,
    append: Callable[..., Any],
    create: Callable[..., Any],
    run_each: RunEach,
    now: float,
) -> None:
    """Run `jobs` in order inside the group's transaction: runs of appends (jobs of the
    store's method whose function is `append`) and creates (`create`) together, the rest
    by `run_each`."""
    run: list[Job[Any]] = []
    appended: set[tuple[str, str]] = set()
    for job in jobs:
        if _is(job, append) and _lean_append(job.args):
            run.append(job)
            appended.add((job.args[0], job.args[1]))
            continue
        root = _is(job, create) and job.args[2] is None
        if root and (job.args[0], job.args[1]) not in appended:
            run.append(job)
            continue
        _flush(conn, run, append, run_each, now)
        run, appended = [], set()
        if root:
            run.append(job)  # a create after an append of it: starts the next run
        else:
            run_each([job])
    _flush(conn, run, append, run_each, now)


def _is(job: Job[Any], method: Callable[..., Any]) -> bool:
    """Whether `job` runs `method`, the store's own: one replaced on the store (a test's
    fault, a hold) is not taken together, so it still runs."""
    return getattr(job.fn, "__func__", None) is method


def _rolled_back_to_savepoint(conn: sqlite3.Connection) -> bool:
    if not conn.in_transaction:
        return False
    try:
        conn.execute("ROLLBACK TO together")
        conn.execute("RELEASE together")
    except sqlite3.Error:
        return False
    return True


def _lean_append(args: tuple[Any, ...]) -> bool:
    _, _, pages, _, _, state, mutations, response_id = args
    return state is not None and not mutations and response_id is None and all(
        map(is_lean, pages)
    )


def _flush(
    conn: sqlite3.Connection, run: list[Job[Any]], append: Callable[..., Any],
    run_each: RunEach, now: float,
) -> None:
    if len(run) < 2:
        run_each(run)
        return
    creates = [job for job in run if not _is(job, append)]
    appends = [_Append(job, *job.args[:6]) for job in run if _is(job, append)]
    try:
        encoded = [[encode_page(page) for page in item.pages] for item in appends]
        states = [encode_state(item.state) for item in appends]
    except Exception:  # (a state orjson cannot encode) one by one, it fails alone
        run_each(run)
        return
    try:
        conn.execute("SAVEPOINT together")
        outcomes = _write(conn, creates, appends, encoded, states, now)
    except Exception as exc:
        if not _rolled_back_to_savepoint(conn):
            # SQLite rolled the whole transaction back (an interrupt, I/O error, full
            # disk or memory may): none of the run is stored, and the group's commit
            # fails for the writes before it.
            for job in run:
                job.result, job.error = None, StoreError(f"sqlite store failed: {exc}")
            return
        run_each(run)
        return
    conn.execute("RELEASE together")
    for job in creates:
        tenant, conv_id = job.args[0], job.args[1]
        job.result = Conversation(tenant, conv_id, None, 0, 0, 0, {}, now)
    for item, (result, error) in zip(appends, outcomes, strict=True):
        item.job.result, item.job.error = result, error


def _write(
    conn: sqlite3.Connection,
    creates: list[Job[Any]],
    appends: list[_Append],
    encoded: list[list[bytes]],
    states: list[bytes],
    now: float,
) -> list[tuple[Conversation | None, Exception | None]]:
    """The run's statements; what each append returns or raises."""
    _insert(
        conn, "INSERT INTO conversations (tenant, conv_id, parent_id, fork_at, length,"
        " version, state, created_at, updated_at) VALUES ", "(?, ?, NULL, 0, 0, 0, ?, ?, ?)",
        " ON CONFLICT DO NOTHING",
        [(job.args[0], job.args[1], b"{}", now, now) for job in creates],
    )
    rows = _rows(conn, {(item.tenant, item.conv_id) for item in appends})
    outcomes: list[tuple[Conversation | None, Exception | None]] = []
    pages: list[tuple[Any, ...]] = []
    hashes: dict[tuple[str, str, str], tuple[str, str, str, int, str]] = {}
    final: dict[tuple[str, str], tuple[int, bytes, int]] = {}
    for item, bodies, state in zip(appends, encoded, states, strict=True):
        key = (item.tenant, item.conv_id)
        row = rows.get(key)
        if row is None:
            outcomes.append((None, UnknownConversation(item.conv_id)))
            continue
        version, parent_id, fork_at = row
        if version != item.expected:
            outcomes.append(
                (None, VersionConflict(f"{item.conv_id}: version {version}, not {item.expected}"))
            )
            continue
        rows[key] = (version + 1, parent_id, fork_at)
        final[key] = (item.new_length, state, version + 1)
        for page, body in zip(item.pages, bodies, strict=True):
            pages.append(page_row(item.tenant, item.conv_id, page, body))
            # A page sent twice in the run is stored as its first copy, with its hash, if any.
            hashes.setdefault((item.tenant, item.conv_id, page.page_id), (
                item.tenant, page.chain_hash, item.conv_id, page.anchor, page.page_id))
        outcomes.append((Conversation(
            item.tenant, item.conv_id, parent_id, fork_at, item.new_length, version + 1,
            dict(item.state), now,
        ), None))
    # The chain hashes first, of the pages not stored yet: as one by one, a page an earlier
    # (retried) append stored keeps its hash from being inserted.
    _insert(
        conn, "INSERT INTO hashes (tenant, chain_hash, conv_id, position)"
        " SELECT column1, column2, column3, column4 FROM (VALUES ", "(?, ?, ?, ?, ?)",
        ") WHERE NOT EXISTS (SELECT 1 FROM pages WHERE pages.tenant = column1"
        " AND pages.conv_id = column3 AND pages.page_id = column5) ON CONFLICT DO NOTHING",
        [row for row in hashes.values() if row[1]],
    )
    _insert(conn, INSERT_PAGES, PAGE_VALUES, " ON CONFLICT DO NOTHING", pages)
    updates = [(t, c, length, state, version) for (t, c), (length, state, version) in final.items()]
    for start in range(0, len(updates), CHUNK):
        chunk = updates[start:start + CHUNK]
        conn.execute(
            "UPDATE conversations SET length = v.column3, state = v.column4,"
            " version = v.column5, updated_at = ? FROM (VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
            + ") AS v WHERE conversations.tenant = v.column1"
            " AND conversations.conv_id = v.column2",
            (now, *(value for row in chunk for value in row)),
        )
    return outcomes


def _insert(
    conn: sqlite3.Connection, head: str, one: str, tail: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        conn.execute(
            head + ", ".join([one] * len(chunk)) + tail,
            [value for row in chunk for value in row],
        )


def _rows(
    conn: sqlite3.Connection, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str | None, int]]:
    """The (version, parent_id, fork_at) of the conversations `keys` name that are stored,
    read in one step a tenant's chunk (a row a step would be a hand-over of the GIL each)."""
    by_tenant: dict[str, list[str]] = {}
    for tenant, conv_id in keys:
        by_tenant.setdefault(tenant, []).append(conv_id)
    rows: dict[tuple[str, str], tuple[int, str | None, int]] = {}
    for tenant, conv_ids in by_tenant.items():
        for start in range(0, len(conv_ids), CHUNK):
            chunk = conv_ids[start:start + CHUNK]
            ((found,),) = conn.execute(
                "SELECT json_group_array(json_array(conv_id, version, parent_id, fork_at))"
                " FROM conversations WHERE tenant = ? AND conv_id IN ("
                + ", ".join(["?"] * len(chunk)) + ")",
                (tenant, *chunk),
            ).fetchall()
            for conv_id, version, parent_id, fork_at in orjson.loads(found):
                rows[(tenant, conv_id)] = (version, parent_id, fork_at)
    return rows
