"""The hot path's metrics are tallied in plain Python and folded into prometheus_client's values
(``observe/metrics.py``): what a scrape shows must be exactly what the library itself would
have counted, bucket by bucket."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from postback.observe.metrics import ATTEMPT_BUCKETS_S, LATENCY_BUCKETS_S, Metrics


def _series(text: str, prefix: str) -> dict[str, float]:
    """Sample lines of one family as {name+labels: value}, without the _created ones."""
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix) and "_created" not in line:
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_fold() -> None:
    metrics = Metrics(multiprocess=False)
    reference = CollectorRegistry()
    attempts = Counter("postback_attempts", "", ["outcome"], registry=reference)
    attempt_seconds = Histogram(
        "postback_attempt_duration_seconds", "", buckets=ATTEMPT_BUCKETS_S, registry=reference
    )
    delivered = Counter("postback_deliveries_delivered", "", ["event_type"], registry=reference)
    latency = Histogram(
        "postback_delivery_latency_seconds", "", buckets=LATENCY_BUCKETS_S, registry=reference
    )
    rnd = random.Random(7)
    # Values on every bucket boundary (a bound belongs to its own bucket), between them,
    # below the first, past the last.
    edges = [b * 1000 for b in ATTEMPT_BUCKETS_S] + [0.0, 0.2, 7.5, 99_000.0, 10_000_000.0]
    for round_ in range(3):
        for duration_ms in edges + [rnd.uniform(0, 120_000) for _ in range(300)]:
            outcome = rnd.choice(["delivered", "retry", "throttled"])
            metrics.attempt(outcome, duration_ms)
            attempts.labels(outcome).inc()
            attempt_seconds.observe(duration_ms / 1000)
            if outcome == "delivered":
                created = 1_000_000
                done = created + int(rnd.choice([0, 5, 10, 2_500, 3_600_000, 9_000_000]))
                event_type = rnd.choice(["mo_text", "dlr"])
                metrics.delivered(created, done, event_type)
                delivered.labels(event_type).inc()
                latency.observe((done - created) / 1000)
        if round_ == 1:
            metrics.fold()  # a fold mid-way, then more tallies: nothing counted twice
    theirs = generate_latest(reference).decode()
    # The last round is tallied, not folded yet: the library's values lag until the render.
    unfolded = _series(generate_latest(metrics.registry).decode(), "postback_attempts_total")
    assert sum(unfolded.values()) < sum(_series(theirs, "postback_attempts_total").values())
    ours = metrics.render()[0].decode()
    for family in (
        "postback_attempts_total",
        "postback_attempt_duration_seconds_",
        "postback_deliveries_delivered_total",
        "postback_delivery_latency_seconds_",
    ):
        expected = _series(theirs, family)
        assert expected, family
        got = _series(ours, family)
        assert got.keys() == expected.keys(), family
        for name, value in expected.items():
            assert abs(got[name] - value) <= 1e-6 * max(1.0, abs(value)), (name, got[name], value)
    assert metrics.attempts["delivered"] == sum(
        v for k, v in _series(theirs, "postback_attempts_total").items() if "delivered" in k
    )


def test_a_process_starting_beside_another_that_has_not_sized_its_file_yet(
    tmp_path: Path,
) -> None:
    """In multiprocess mode the library creates a process's file before it sizes it; another
    process reading the directory meanwhile (registering the collector reads it all) failed
    with ``struct.error`` and a ``serve`` process exited while starting. The empty file is
    skipped; every sized one is summed as before."""
    (tmp_path / "counter_99999.db").write_bytes(b"")
    code = (
        "from postback.observe.metrics import Metrics\n"
        "metrics = Metrics()\n"
        "metrics.attempt('delivered', 5.0)\n"
        "print(metrics.render()[0].decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _series(done.stdout, "postback_attempts_total") == {
        'postback_attempts_total{outcome="delivered"}': 1.0
    }
