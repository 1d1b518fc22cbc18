"""Awaiting forever, for the upstream that never answers."""

from __future__ import annotations

import asyncio
from typing import NoReturn


async def wait_until_cancelled(cancelled: asyncio.Event) -> NoReturn:
    """Wait forever; when cancelled, set `cancelled` and let the cancellation through."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.set()
        raise
    raise AssertionError("unreachable")
