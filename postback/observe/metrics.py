"""Prometheus metrics (``prometheus_client``), served at ``GET /metrics`` by every process.

Two kinds of series:

* **Event counters and histograms** (attempts by outcome, deliveries finished by event type,
  end-to-end latency, ...) counted in the process that saw the event. Each ``Metrics`` has its
  own registry, so several services in one test process never collide. When
  ``PROMETHEUS_MULTIPROC_DIR`` is set, the library's multiprocess mode is used instead: every
  process on the host writes its values to that directory and any process's ``/metrics``
  answers with the sum over all of them (the operator empties the directory before starting).
* **Database-wide gauges** (backlog by state, oldest pending age, the top-N endpoints): read
  by a periodic query (``postback.observe.backlog``), held as a snapshot, and rendered by a
  custom collector. They are the same in every process, so they are never summed.

Per-delivery cost is a few dictionary updates: the hot counters and histograms are tallied in
plain Python (``_Tally``, ``_Counts``) and folded into the library's values at each record
flush and before every render (``fold``). The library's own ``inc``/``observe`` take a lock per
value, three per histogram observation, which measured ~5 µs a delivery in a loop and more in
the service. The labelled children are cached in small dicts keyed by outcome and event type
(both bounded), never looked up by endpoint.
"""

from __future__ import annotations

import glob
import os
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from postback.core.health import Backlog, EndpointBacklog

# Upper bounds (seconds) of the end-to-end latency histogram: message stored -> delivered.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
# Upper bounds (seconds) of one attempt's duration (request sent -> answer read).
ATTEMPT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

MAX_EVENT_TYPE_LABELS = 200
"""Distinct ``event_type`` label values per process; later ones are counted as ``other``.
Event types are few (built-in plus each account's own), but a label must never be unbounded."""


def multiprocess_dir() -> str | None:
    """The directory of the library's multiprocess mode, when the operator set one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass(slots=True)
class BacklogSnapshot:
    """The latest database-wide view, as read by the backlog poller."""

    backlog: Backlog
    busiest: list[EndpointBacklog] = field(default_factory=list)
    failing: list[tuple[str, int]] = field(default_factory=list)
    """(endpoint_id, consecutive failures) of the endpoints failing longest."""
    now_ms: int = 0


class _Tally:
    """One histogram's observations as bucket counts and a sum, until ``fold`` adds them to it.

    Relies on two attributes of ``prometheus_client.Histogram`` (``_upper_bounds``, the bounds
    with +Inf last, and ``_buckets``/``_sum``, its values): ``test_metrics_fold`` renders a
    folded histogram beside one fed by ``observe`` and fails if they ever differ."""

    __slots__ = ("_bounds", "_counts", "_histogram", "_sum")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._bounds: list[float] = list(histogram._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        # The first bucket whose bound is >= amount, as the library's linear search finds.
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def fold(self) -> None:
        counts = self._counts
        buckets = self._histogram._buckets
        folded = False
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)
                counts[index] = 0
                folded = True
        if folded:
            self._histogram._sum.inc(self._sum)
            self._sum = 0.0


class _Counts:
    """Increments of labelled counter children, by child, until ``fold``."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: dict[Counter, int] = {}

    def add(self, child: Counter) -> None:
        pending = self.pending
        pending[child] = pending.get(child, 0) + 1

    def fold(self) -> None:
        if self.pending:
            pending, self.pending = self.pending, {}
            for child, count in pending.items():
                child.inc(count)


class _SharedFilesCollector(Collector):
    """The library's ``MultiProcessCollector``, leaving out the files other processes have
    created but not yet sized. Reading one raised ``struct.error`` ("unpack_from requires a
    buffer of at least 4 bytes"): the library opens a process's file before it sizes it, and
    registering a collector reads them all, so a ``serve`` process starting beside its sibling
    once exited before it served anything (seen in the bench). A file that has a size keeps it,
    so what is read after the check is whole."""

    def __init__(self, path: str) -> None:
        self._path = path

    def collect(self) -> Iterable[Metric]:
        files = []
        for name in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(name) >= 8:  # the used-size word the library reads first
                    files.append(name)
            except OSError:  # a dead process's file, removed meanwhile
                continue
        merged: Iterable[Metric] = MultiProcessCollector.merge(  # type: ignore[no-untyped-call]
            files, accumulate=True
        )
        return merged


class _BacklogCollector(Collector):
    """Renders the latest snapshot; yields nothing before the first poll."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        snap = self._metrics.snapshot
        if snap is None:
            return
        b = snap.backlog
        by_state = GaugeMetricFamily(
            "postback_deliveries",
            "Deliveries in the database by state (read periodically, fleet-wide).",
            labels=["state"],
        )
        for state, count in (
            ("pending", b.pending),
            ("delivering", b.delivering),
            ("dead", b.dead),
        ):
            by_state.add_metric([state], count)
        yield by_state
        yield GaugeMetricFamily(
            "postback_deliveries_due",
            "Pending deliveries whose next attempt time has passed (waiting for a worker).",
            value=b.due,
        )
        yield GaugeMetricFamily(
            "postback_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (since its message was stored); 0 when none.",
            value=b.oldest_pending_age_s(snap.now_ms),
        )
        yield GaugeMetricFamily(
            "postback_oldest_due_lag_seconds",
            "How long the most overdue pending delivery has been due; 0 when none is due.",
            value=b.due_lag_s(snap.now_ms),
        )
        pending = GaugeMetricFamily(
            "postback_endpoint_pending_deliveries",
            "Pending deliveries of the top-N endpoints by backlog.",
            labels=["endpoint_id"],
        )
        due = GaugeMetricFamily(
            "postback_endpoint_due_deliveries",
            "Due deliveries of the top-N endpoints by backlog.",
            labels=["endpoint_id"],
        )
        for e in snap.busiest:
            pending.add_metric([e.endpoint_id], e.pending)
            due.add_metric([e.endpoint_id], e.due)
        yield pending
        yield due
        failing = GaugeMetricFamily(
            "postback_endpoint_consecutive_failures",
            "Consecutive failed attempts of the top-N failing endpoints.",
            labels=["endpoint_id"],
        )
        for endpoint_id, count in snap.failing:
            failing.add_metric([endpoint_id], count)
        yield failing


class Metrics:
    """The counters one process keeps, and how they are rendered."""

    def __init__(self, *, multiprocess: bool | None = None) -> None:
        self.multiprocess = multiprocess_dir() is not None if multiprocess is None else multiprocess
        # In multiprocess mode the values live in the shared directory and are read back by a
        # MultiProcessCollector; registering them as well would report this process twice.
        own = None if self.multiprocess else CollectorRegistry(auto_describe=True)
        self._attempts = Counter(
            "postback_attempts",
            "Attempts made, by outcome (delivered, retry, throttled, permanent, aborted).",
            ["outcome"],
            registry=own,
        )
        self._attempt_seconds = Histogram(
            "postback_attempt_duration_seconds",
            "Duration of one attempt: request sent to answer read (or timeout).",
            buckets=ATTEMPT_BUCKETS_S,
            registry=own,
        )
        self._delivered = Counter(
            "postback_deliveries_delivered",
            "Deliveries that ended delivered, by event type.",
            ["event_type"],
            registry=own,
        )
        self._dead = Counter(
            "postback_deliveries_dead",
            "Deliveries that ended dead (dead letters), by event type.",
            ["event_type"],
            registry=own,
        )
        self._aborted = Counter(
            "postback_deliveries_aborted",
            "Deliveries the receiver stopped with 'webhook-delivery: abort-message'.",
            registry=own,
        )
        self._ingested = Counter(
            "postback_messages_ingested",
            "Messages accepted and stored (duplicates by idempotency key not counted).",
            registry=own,
        )
        self._latency = Histogram(
            "postback_delivery_latency_seconds",
            "End to end: message stored to delivered (includes retries).",
            buckets=LATENCY_BUCKETS_S,
            registry=own,
        )
        self._endpoint_changes = Counter(
            "postback_endpoint_state_changes",
            "Endpoints disabled, re-enabled, starting to fail, recovering or paused by their "
            "circuit breaker (breaker_open), by change.",
            ["change"],
            registry=own,
        )
        self._taken = Counter(
            "postback_deliveries_taken",
            "Deliveries this process took to send, by path: fast (leased by the ingest that "
            "stored them, in this process) or claim (claimed from the store: retries, other "
            "nodes' ingests, what the fast path had no room for).",
            ["path"],
            registry=own,
        )
        self._taken_fast = self._taken.labels("fast")
        self._taken_claim = self._taken.labels("claim")
        self._claims = Counter(
            "postback_claims",
            "Claim statements this process ran against the store, by result: rows (it took "
            "deliveries) or empty (nothing it could take). Many empty claims are wasted "
            "database round trips.",
            ["result"],
            registry=own,
        )
        self._claims_rows = self._claims.labels("rows")
        self._claims_empty = self._claims.labels("empty")
        self._attempt_tally = _Tally(self._attempt_seconds)
        self._latency_tally = _Tally(self._latency)
        self._counts = _Counts()
        self.attempts: dict[str, int] = {}
        """Attempts by outcome in this process (what the operator dashboard shows as "here")."""
        self.ingested_total = 0
        self._attempt_children: dict[str, Counter] = {}
        self._delivered_children: dict[str, Counter] = {}
        self._dead_children: dict[str, Counter] = {}
        self.snapshot: BacklogSnapshot | None = None
        self.registry: CollectorRegistry = (
            own if own is not None else CollectorRegistry(auto_describe=True)
        )
        if self.multiprocess:
            shared = multiprocess_dir()
            if shared is None or not os.path.isdir(shared):
                raise ValueError("PROMETHEUS_MULTIPROC_DIR is not set or not a directory")
            self.registry.register(_SharedFilesCollector(shared))
        self.registry.register(_BacklogCollector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    # -- counting (hot path) --------------------------------------------------------------------

    def attempt(self, outcome: str, duration_ms: float | None = None) -> None:
        child = self._attempt_children.get(outcome)
        if child is None:
            child = self._attempt_children[outcome] = self._attempts.labels(outcome)
            self.attempts[outcome] = 0
        self._counts.add(child)
        self.attempts[outcome] += 1
        if duration_ms is not None:
            self._attempt_tally.observe(duration_ms / 1000)

    def delivered(self, created_at_ms: int, delivered_at_ms: int, event_type: str = "") -> None:
        self._counts.add(self._child(self._delivered, self._delivered_children, event_type))
        self._latency_tally.observe(max(delivered_at_ms - created_at_ms, 0) / 1000)

    def taken(self, count: int, *, fast: bool) -> None:
        """Once per batch taken (an ingest's leases, a claim), not per delivery."""
        (self._taken_fast if fast else self._taken_claim).inc(count)

    def claimed(self, count: int) -> None:
        """Once per claim statement, with what it took."""
        (self._claims_rows if count else self._claims_empty).inc()

    def fold(self) -> None:
        """Add what the hot path tallied to the library's values (each record flush, and
        before a render), so ``/metrics`` and, in multiprocess mode, the shared files see it."""
        self._counts.fold()
        self._attempt_tally.fold()
        self._latency_tally.fold()

    def dead(self, event_type: str = "") -> None:
        self._child(self._dead, self._dead_children, event_type).inc()

    def aborted(self) -> None:
        self._aborted.inc()

    def ingested(self, count: int) -> None:
        self._ingested.inc(count)
        self.ingested_total += count

    def endpoint_change(self, change: str) -> None:
        """disabled, enabled, failing, recovered, breaker_open: rare, so no cache."""
        self._endpoint_changes.labels(change).inc()

    @staticmethod
    def _child(parent: Counter, cache: dict[str, Counter], label: str) -> Counter:
        child = cache.get(label)
        if child is None:
            if len(cache) >= MAX_EVENT_TYPE_LABELS:
                label = "other"
                child = cache.get(label)
            if child is None:
                child = cache[label] = parent.labels(label)
        return child

    # -- reading ----------------------------------------------------------------------------------

    def set_snapshot(self, snapshot: BacklogSnapshot) -> None:
        self.snapshot = snapshot

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        self.fold()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
