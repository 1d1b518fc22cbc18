"""Pages built directly, and one `store` fixture parametrised over every backend."""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path as FsPath
from typing import Any

import pytest

from proxy.store import open_store
from proxy.store.base import PageStore
from proxy.vm.pages import Modality, Page, PageKind

BACKEND_NAMES = ["memory", "sqlite", "cached-sqlite", "postgres"]


class FakeClock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_page(
    number: int,
    text: str | None = None,
    *,
    prefix: str = "msg",
    anchor: int | None = None,
    role: str = "user",
    kind: PageKind = PageKind.TRANSCRIPT,
    modality: Modality = Modality.TEXT,
    chain_hash: str | None = None,
    hint: str = "",
    message: dict[str, Any] | None = None,
    **fields: Any,
) -> Page:
    """A page as the VM core would build it; message pages carry their message dict."""
    text = text if text is not None else f"message number {number}"
    is_message = prefix == "msg"
    if message is None and is_message:
        message = {"role": role, "content": text}
    return Page(
        page_id=f"{prefix}_{number}",
        kind=kind,
        modality=modality,
        anchor=number if anchor is None else anchor,
        turn=fields.pop("turn", number // 2),
        role=role,
        renderings=(text, text[:40], text[:20], f"{prefix}_{number}"),
        tokens=(len(text) // 4 + 1, len(text[:40]) // 4 + 1, len(text[:20]) // 4 + 1, 3),
        hint=hint or text[:30],
        chain_hash=(f"h{number}" if chain_hash is None and is_message else chain_hash or ""),
        message=message,
        **fields,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def postgres_url() -> str | None:
    return os.environ.get("VM_TEST_POSTGRES_URL")


async def _postgres_store(clock: Callable[[], float]) -> tuple[PageStore, str]:
    url = postgres_url()
    if not url:
        pytest.skip("VM_TEST_POSTGRES_URL is not set: no PostgreSQL to test against")
    schema = f"vmtest_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in url else "?"
    try:
        store = await open_store(f"{url}{sep}schema={schema}", clock=clock)
    except OSError as exc:
        pytest.skip(f"PostgreSQL at VM_TEST_POSTGRES_URL is unreachable: {exc}")
    return store, schema


_counter = itertools.count()


@pytest.fixture(params=BACKEND_NAMES)
async def store(
    request: pytest.FixtureRequest, tmp_path: FsPath, clock: FakeClock
) -> AsyncIterator[PageStore]:
    name: str = request.param
    schema = None
    if name == "memory":
        opened = await open_store("memory://", clock=clock)
    elif name == "sqlite":
        opened = await open_store(f"sqlite:///{tmp_path}/store{next(_counter)}.db", clock=clock)
    elif name == "cached-sqlite":
        opened = await open_store(f"sqlite:///{tmp_path}/cached.db", cache_pages=64, clock=clock)
    else:
        opened, schema = await _postgres_store(clock)
    try:
        yield opened
    finally:
        if schema is not None:
            await _drop_schema(opened, schema)
        await opened.close()


async def _drop_schema(store: PageStore, schema: str) -> None:
    drop = getattr(store, "drop_schema", None)
    if drop is not None:
        await drop()


def hold(store: Any, name: str) -> tuple[threading.Event, threading.Event]:
    """The SQLite store's writer-thread function `name` made to wait, once called, for
    `release`: (started, release)."""
    started, release = threading.Event(), threading.Event()
    real = getattr(store, name)

    def held(conn: Any, *args: Any) -> Any:
        started.set()
        release.wait(10)
        return real(conn, *args)

    setattr(store, name, held)
    return started, release


def count_commits(store: Any) -> list[int]:
    """The number of jobs of every group the SQLite store's writer commits from now on."""
    groups: list[int] = []
    group = store._group_commit

    def counted(jobs: list[Any]) -> None:
        groups.append(len(jobs))
        group(jobs)

    store._writer._group = counted
    return groups
