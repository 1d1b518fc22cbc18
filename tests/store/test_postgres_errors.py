"""What the PostgreSQL store raises when the server goes away mid-operation: a StoreError,
which the memory path answers as an outage (fail-open, or a 503 under a session) and logs
in one line. A connection caught mid-operation by a restart raises asyncpg's
InternalClientError, which was let through as it was (a reviewer's restart run)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from proxy.store.base import StoreError
from proxy.store.postgres import PostgresStore


class _BrokenPool:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def fetchrow(self, *args: Any) -> Any:
        raise self.error

    async def fetch(self, *args: Any) -> Any:
        raise self.error


@pytest.mark.parametrize("error", [
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    ConnectionRefusedError(111, "Connection refused"),
], ids=["mid-operation", "shutdown", "refused"])
async def test_a_server_gone_mid_operation_is_a_store_error(error: Exception) -> None:
    store = object.__new__(PostgresStore)
    store._pool = _BrokenPool(error)  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="postgres store failed"):
        await store._fetchrow("SELECT 1")
    with pytest.raises(StoreError):
        await store._fetch("SELECT 1")
