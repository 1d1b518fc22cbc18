"""The app's state, typed: what `create_app` and its lifespan set, and what handlers read."""

from __future__ import annotations

from starlette.datastructures import State
from starlette.requests import HTTPConnection

from proxy.config import Settings
from proxy.http.resent import ResentBodies
from proxy.http.responses_validation import RESENT_INPUT
from proxy.http.validation import RESENT_MESSAGES
from proxy.loop.appends_under_way import AppendsUnderWay
from proxy.loop.deliveries import Deliveries
from proxy.loop.meaning import Meaning
from proxy.loop.prefix_cache import PrefixCache
from proxy.loop.repeats import Repeats
from proxy.loop.summarizer import Summarizer
from proxy.loop.tip_claims import TipClaims
from proxy.metrics import Metrics
from proxy.store import PageStore
from proxy.store.locks import KeyedLocks
from proxy.upstream.client import Upstream


class AppState(State):
    """`app.state`. Set by create_app: `settings`, `metrics`, `session_locks`,
    `prefix_cache`, `repeats`, `appends`, `tips`, `deliveries`, `resent_chat`,
    `resent_responses`; by
    the lifespan, while it runs: `store`, `upstream`, `summarizer` (None with `vm.summarizer`
    off), `meaning` (None with embeddings off).

    starlette's State, its values kept as plain attributes. In a State every read goes
    through a failed attribute lookup (an AttributeError built and dropped) before its
    `__getattr__`; the hot path reads app state several times a request."""

    settings: Settings
    metrics: Metrics
    session_locks: KeyedLocks
    prefix_cache: PrefixCache
    repeats: Repeats
    appends: AppendsUnderWay
    tips: TipClaims
    deliveries: Deliveries
    # The last long request of recent conversations, per dialect (proxy.http.resent).
    resent_chat: ResentBodies
    resent_responses: ResentBodies
    store: PageStore
    upstream: Upstream
    summarizer: Summarizer | None
    # While embeddings are on (set by the lifespan): embedder, vector index, worker.
    meaning: Meaning | None

    def __init__(self, settings: Settings) -> None:
        super().__init__(self.__dict__)
        self.settings = settings
        self.metrics = Metrics()
        self.session_locks = KeyedLocks()
        self.prefix_cache = PrefixCache()
        self.repeats = Repeats()
        self.appends = AppendsUnderWay()
        self.tips = TipClaims(self.prefix_cache)
        self.deliveries = Deliveries()
        remembered = int(settings.server.resent_bodies_mb * (1 << 20))
        self.resent_chat = ResentBodies(RESENT_MESSAGES, max_bytes=remembered)
        self.resent_responses = ResentBodies(RESENT_INPUT, max_bytes=remembered)
        _sample_resent(self.metrics, "chat", self.resent_chat)
        _sample_resent(self.metrics, "responses", self.resent_responses)
        self.summarizer = None
        self.meaning = None


def _sample_resent(metrics: Metrics, api: str, resent: ResentBodies) -> None:
    """`/metrics` series of one API's remembered bodies (proxy.http.resent)."""
    metrics.sample(
        "vm_resent_bodies_read_total", lambda: resent.hits, {"api": api}, kind="counter",
        help="Requests whose resent history was read from the request before",
    )
    metrics.sample(
        "vm_resent_bodies_bytes", lambda: resent.held_bytes, {"api": api},
        help="Bytes of the request bodies remembered for that",
    )


def app_state(connection: HTTPConnection) -> AppState:
    state = connection.app.state
    assert isinstance(state, AppState)
    return state
