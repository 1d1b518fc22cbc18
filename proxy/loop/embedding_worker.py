"""The background worker that embeds pages, off the request path.

A memory-active turn enqueues its conversation (`enqueue`: a put into a bounded queue,
nothing else on the request path). The worker takes conversations one at a time and
embeds, in anchor order, the message pages on the conversation's path past each span's
mark (proxy.store.vectors), each as its passages (proxy.vm.passages), EMBED_CHUNK
messages per store write, so a page is
searchable by words at once and by meaning a moment later. Short chats never need memory
and never enqueue: they pay nothing for embeddings.

On start, and on `catch_up`, conversations whose mark is behind their length (the
process stopped, or an embedder failure dropped the job) are queued again; a full queue
drops the newest job (its conversation's next memory-active turn queues it again). An
embedder that fails is logged and counted (`vm_embeddings_failures_total{stage="pages"}`)
and the job is dropped: the conversation keeps its BM25 search.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from proxy.embeddings import Embedder, EmbeddingError
from proxy.embeddings.base import Auth
from proxy.metrics import Metrics
from proxy.store.base import PageStore, Path, PathSpan, StoreError
from proxy.vm.pages import Page
from proxy.vm.passages import passage_id, passages

if TYPE_CHECKING:
    from proxy.store.vectors import VectorIndex

log = logging.getLogger("vm_proxy.embeddings")

EMBED_CHUNK = 32
_EMBEDDED_ROLES = ("user", "assistant", "tool")


class EmbeddingWorker:
    def __init__(
        self, store: PageStore, index: VectorIndex, embedder: Embedder, metrics: Metrics,
        *, queue_size: int = 1000, chunk: int = EMBED_CHUNK,
    ) -> None:  # fmt: skip
        self._store = store
        self._index = index
        self._embedder = embedder
        self._metrics = metrics
        self._chunk = chunk
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(queue_size)
        self._auth: dict[tuple[str, str], Auth] = {}
        self._task: asyncio.Task[None] | None = None
        self._embedded = metrics.counter(
            "vm_embedded_pages_total", help="Message pages the background worker embedded"
        )
        self._dropped = metrics.counter(
            "vm_embeddings_dropped_total", help="Embedding jobs dropped: the queue was full"
        )
        metrics.sample("vm_embeddings_queued", lambda: self._queue.qsize(),
                       help="Conversations waiting for the embedding worker")  # fmt: skip

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vm-embeddings")
        await self._resume()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def enqueue(self, tenant: str, conv_id: str, auth: Auth = ()) -> None:
        """Queue the conversation (once: a queued one only takes the newer credential)."""
        key = (tenant, conv_id)
        queued = key in self._auth
        self._auth[key] = auth
        if queued:
            return
        try:
            self._queue.put_nowait(key)
        except asyncio.QueueFull:
            del self._auth[key]
            self._dropped.inc()

    async def drain(self) -> None:
        """Wait until every queued conversation is embedded (or has failed)."""
        await self._queue.join()

    async def catch_up(self) -> None:
        """Queue every conversation whose vectors lag its pages, and wait for them."""
        await self._resume()
        await self.drain()

    async def _resume(self) -> None:
        try:
            behind = await self._index.pending(self._embedder.name)
        except StoreError as exc:
            self._failed(exc)
            return
        for tenant, conv_id in behind:
            self.enqueue(tenant, conv_id)

    async def _run(self) -> None:
        while True:
            key = await self._queue.get()
            auth = self._auth.pop(key, ())
            try:
                await self.embed_conversation(*key, auth=auth)
            except (EmbeddingError, StoreError, ValueError) as exc:
                self._failed(exc)
            except Exception:  # the worker must outlive any one job
                log.exception("embeddings: the job of conversation %s failed", key[1])
                self._metrics.counter("vm_embeddings_failures_total", {"stage": "pages"}).inc()
            finally:
                self._queue.task_done()

    async def embed_conversation(self, tenant: str, conv_id: str, *, auth: Auth = ()) -> int:
        """Embed the pages on the conversation's path past their marks; how many."""
        path = await self._store.path(tenant, conv_id)
        space = self._embedder.name
        marks = await self._index.marks(tenant, [s.conv_id for s in path.spans], space)
        done = 0
        for span in reversed(path.spans):  # the root first: the oldest pages
            conv = await self._store.get_conversation(tenant, span.conv_id)
            if conv is None:
                continue
            end = conv.length if span.hi is None else min(span.hi, conv.length)
            start = max(marks.get(span.conv_id, 0), span.lo)
            one = Path(tenant, (PathSpan(span.conv_id, span.lo, span.hi),))
            while start < end:
                stop = min(end, start + self._chunk)
                pages = await self._store.pages_in_range(one, start, stop)
                done += await self._embed(tenant, span.conv_id, pages, stop, auth)
                start = stop
        return done

    async def _embed(
        self, tenant: str, conv_id: str, pages: list[Page], done_below: int, auth: Auth
    ) -> int:
        chosen = [p for p in pages if p.role in _EMBEDDED_ROLES and p.text.strip()]
        keys: list[tuple[str, int]] = []
        texts: list[str] = []
        for page in chosen:
            for number, text in enumerate(embedded_texts(page)):
                keys.append((passage_id(page.page_id, number), page.anchor))
                texts.append(text)
        rows = []
        if texts:
            vectors = await self._embedder.embed(texts, auth=auth)
            rows = [(row, anchor, vectors[i].tobytes()) for i, (row, anchor) in enumerate(keys)]
        await self._index.save(tenant, conv_id, self._embedder.name, rows, done_below)
        self._embedded.inc(len(chosen))
        return len(chosen)

    def _failed(self, error: BaseException) -> None:
        self._metrics.counter(
            "vm_embeddings_failures_total", {"stage": "pages"},
            help="Embedding or vector search failures (the turn searched by words alone)",
        ).inc()  # fmt: skip
        log.warning("embeddings: embedding pages failed, they stay searchable by words: %s",
                    error)  # fmt: skip


def embedded_texts(page: Page) -> list[str]:
    """What a page is embedded as: its passages (proxy.vm.passages), each after who said
    it (questions name people, and in a two-person chat a message rarely names its own
    speaker; BM25 indexes the speaker too, proxy.store.codec)."""
    speaker = page.extra.get("speaker")
    said = f"{speaker}: " if isinstance(speaker, str) and speaker else ""
    return [f"{said}{text}" for text in passages(page.text)]
