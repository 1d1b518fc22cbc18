"""Starting and stopping embeddings with the app (its lifespan calls these)."""

from __future__ import annotations

import logging

import httpx

from proxy.config import EmbeddingsSettings
from proxy.embeddings import EmbeddingError, open_embedder
from proxy.loop.meaning import Meaning
from proxy.metrics import Metrics
from proxy.store.base import PageStore

log = logging.getLogger("vm_proxy.embeddings")


async def open_meaning(
    settings: EmbeddingsSettings,
    store: PageStore,
    metrics: Metrics,
    *,
    chosen: bool,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Meaning | None:
    """Embeddings as `settings` say (provider resolved), None when off. `chosen`: the user
    named the provider (else `auto` chose it): then a missing extra or model is an error at
    start-up; an automatic choice that cannot run is logged and left off."""
    if settings.provider == "off":
        return None
    try:
        import numpy  # noqa: F401  (the vector math needs it, whichever the provider)

        embedder = open_embedder(settings, metrics, transport=transport)
    except (ImportError, EmbeddingError) as exc:
        message = str(exc) if isinstance(exc, EmbeddingError) else (
            "embeddings need numpy (a dependency of vm-proxy): reinstall the package")  # fmt: skip
        if chosen:
            raise EmbeddingError(message) from None
        log.warning("embeddings are off: %s", message)
        return None
    if embedder is None:
        return None
    from proxy.loop.embedding_worker import EmbeddingWorker
    from proxy.store.vectors import open_vectors

    index = await open_vectors(store, cache_bytes=settings.cache_mb << 20)
    worker = EmbeddingWorker(store, index, embedder, metrics, queue_size=settings.queue_size,
                             chunk=settings.batch_size)  # fmt: skip
    await worker.start()
    log.info("embeddings: %s (%s)", settings.provider, embedder.name)
    return Meaning(settings, embedder, index, worker, metrics)


async def close_meaning(meaning: Meaning | None) -> None:
    if meaning is not None:
        await meaning.worker.close()
        await meaning.embedder.aclose()
