"""A small Prometheus registry: counters and histograms, rendered in the text format.

    metrics = Metrics()
    metrics.counter("vm_faults_total", {"mode": "strict"}).inc()
    metrics.histogram("vm_proxy_upstream_seconds", {"route": "/v1/chat/completions"}).observe(0.4)
    metrics.render()  # -> the body of GET /metrics

    metrics.sample("vm_backlog_pages", lambda: len(queue), {"queue": "embeddings"})

One instance lives on `app.state.metrics`. Series are created on first use; names and
label sets are the caller's to keep stable (label values must stay few: routes, statuses,
modes, never ids). A sample is read when /metrics is rendered (a gauge, or a counter kept
elsewhere, like the page cache's hits). The event loop is single-threaded, so no locks.

Names other parts of the proxy feed: `vm_backlog_pages{queue=...}` (a gauge of pages
waiting for background work: `embeddings`, `summaries`), for the embedding and summarizer
queues to register with `sample`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence

LabelKey = tuple[tuple[str, str], ...]

# Seconds; fits both a loopback hop (sub-millisecond) and a long generation.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)


class Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class Histogram:
    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.sum += value
        self.count += 1


class Sample:
    __slots__ = ("read",)

    def __init__(self, read: Callable[[], float]) -> None:
        self.read = read


class _Family:
    def __init__(self, kind: str, help_text: str, buckets: Sequence[float] = ()) -> None:
        self.kind = kind
        self.help = help_text
        self.buckets = tuple(buckets)
        self.series: dict[LabelKey, Counter | Histogram | Sample] = {}


class Metrics:
    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def counter(
        self, name: str, labels: Mapping[str, str] | None = None, *, help: str = ""
    ) -> Counter:
        family = self._family(name, "counter", help)
        key = _key(labels)
        series = family.series.get(key)
        if series is None:
            series = family.series[key] = Counter()
        assert isinstance(series, Counter)
        return series

    def histogram(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        help: str = "",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        family = self._family(name, "histogram", help, buckets)
        key = _key(labels)
        series = family.series.get(key)
        if series is None:
            series = family.series[key] = Histogram(family.buckets)
        assert isinstance(series, Histogram)
        return series

    def sample(
        self,
        name: str,
        read: Callable[[], float],
        labels: Mapping[str, str] | None = None,
        *,
        help: str = "",
        kind: str = "gauge",
    ) -> None:
        """A series whose value is `read()` when rendered (`kind`: gauge or counter);
        registering the same name and labels again replaces the reader."""
        self._family(name, kind, help).series[_key(labels)] = Sample(read)

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """A counter's value, or a histogram's observation count; 0 when never touched."""
        family = self._families.get(name)
        series = family.series.get(_key(labels)) if family else None
        if series is None:
            return 0.0
        if isinstance(series, Sample):
            return float(series.read())
        return series.value if isinstance(series, Counter) else float(series.count)

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(self._families):
            family = self._families[name]
            if family.help:
                lines.append(f"# HELP {name} {_escape_help(family.help)}")
            lines.append(f"# TYPE {name} {family.kind}")
            for key in sorted(family.series):
                series = family.series[key]
                if isinstance(series, Sample):
                    lines.append(f"{name}{_labels(key)} {_number(float(series.read()))}")
                    continue
                if isinstance(series, Counter):
                    lines.append(f"{name}{_labels(key)} {_number(series.value)}")
                    continue
                cumulative = 0
                for bound, count in zip(series.buckets, series.counts, strict=True):
                    cumulative += count
                    le = key + (("le", _number(bound)),)
                    lines.append(f"{name}_bucket{_labels(le)} {cumulative}")
                lines.append(f"{name}_bucket{_labels(key + (('le', '+Inf'),))} {series.count}")
                lines.append(f"{name}_sum{_labels(key)} {_number(series.sum)}")
                lines.append(f"{name}_count{_labels(key)} {series.count}")
        return "\n".join(lines) + "\n"

    def _family(
        self, name: str, kind: str, help_text: str, buckets: Sequence[float] = ()
    ) -> _Family:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _Family(kind, help_text, sorted(buckets))
        elif family.kind != kind:
            raise ValueError(f"metric {name} is a {family.kind}, not a {kind}")
        elif help_text and not family.help:
            family.help = help_text
        return family


def _key(labels: Mapping[str, str] | None) -> LabelKey:
    if not labels:
        return ()
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


def _labels(key: LabelKey) -> str:
    if not key:
        return ""
    inner = ",".join(f'{k}="{_escape_value(v)}"' for k, v in key)
    return "{" + inner + "}"


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
