"""`vm-proxy serve` with the short chat's store a no-op: an experiment, not a mode (overhead.py's
`vm-default-unstored` target). Measured in the same run as `vm-default`, it tells what storing
a short chat's turn costs the server, beyond placing and relaying it: with nothing stored,
each request is a new chat's first turn (a lookup, a deferred create), relayed and observed
as usual.

    python benchmarks/_unstored.py serve --port P --upstream U --store S
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.cli import main  # noqa: E402
from proxy.loop.short_chat import ShortTurn  # noqa: E402


async def _stored_nothing(self: ShortTurn, answer: dict[str, Any] | None) -> None:
    self.stored = True


if __name__ == "__main__":
    ShortTurn.store = _stored_nothing  # type: ignore[method-assign]
    raise SystemExit(main(sys.argv[1:]))
