"""Process-local counters, rendered in the Prometheus text format at ``GET /metrics``."""

from __future__ import annotations

from collections import Counter

# Upper bounds (seconds) of the end-to-end latency histogram: message stored -> delivered.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.dead_total = 0
        self.delivered_total = 0
        self.ingested_total = 0
        self._latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self._latency_sum_s = 0.0

    def attempt(self, outcome: str) -> None:
        self.attempts[outcome] += 1

    def dead(self) -> None:
        self.dead_total += 1

    def ingested(self, count: int) -> None:
        self.ingested_total += count

    def delivered(self, created_at_ms: int, delivered_at_ms: int) -> None:
        self.delivered_total += 1
        seconds = max(delivered_at_ms - created_at_ms, 0) / 1000
        self._latency_sum_s += seconds
        for i, bound in enumerate(LATENCY_BUCKETS_S):
            if seconds <= bound:
                self._latency_counts[i] += 1
                return
        self._latency_counts[-1] += 1

    def render(self) -> str:
        lines = [
            "# TYPE postback_attempts_total counter",
            *(
                f'postback_attempts_total{{outcome="{o}"}} {n}'
                for o, n in sorted(self.attempts.items())
            ),
            "# TYPE postback_deliveries_dead_total counter",
            f"postback_deliveries_dead_total {self.dead_total}",
            "# TYPE postback_deliveries_delivered_total counter",
            f"postback_deliveries_delivered_total {self.delivered_total}",
            "# TYPE postback_messages_ingested_total counter",
            f"postback_messages_ingested_total {self.ingested_total}",
            "# TYPE postback_delivery_latency_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS_S, self._latency_counts, strict=False):
            cumulative += count
            lines.append(f'postback_delivery_latency_seconds_bucket{{le="{bound}"}} {cumulative}')
        cumulative += self._latency_counts[-1]
        lines.append(f'postback_delivery_latency_seconds_bucket{{le="+Inf"}} {cumulative}')
        lines.append(f"postback_delivery_latency_seconds_sum {self._latency_sum_s:.6f}")
        lines.append(f"postback_delivery_latency_seconds_count {cumulative}")
        return "\n".join(lines) + "\n"
