"""What every embedder offers, and its one error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# Credential headers of the request whose texts are embedded (lower-cased name, value).
Auth = Sequence[tuple[str, str]]


class EmbeddingError(Exception):
    """The texts could not be embedded (the model failed, the upstream refused or timed
    out, the extra is not installed). Callers fall back to words alone."""


class Embedder(Protocol):
    @property
    def name(self) -> str:
        """Names the vector space: vectors of different names are never compared."""

    async def embed(
        self, texts: Sequence[str], *, auth: Auth = (), urgent: bool = False
    ) -> npt.NDArray[np.float32]:
        """One unit-length row per text, in order. `urgent`: a request waits for it (a
        turn's query), so it must not queue behind background work."""

    async def aclose(self) -> None: ...
