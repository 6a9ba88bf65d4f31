"""Plots drawn on the server as inline SVG: no charting library, no external service.

Pure functions of the points they are given; the page embeds the SVG text as is. Every label
is escaped, every coordinate is a number formatted here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from postback.core.model import ActivityPoint

WIDTH = 640
HEIGHT = 160
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 10, 22


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


def _polyline(values: Sequence[float], ceiling: float) -> str:
    inner_w = WIDTH - _LEFT - _RIGHT
    inner_h = HEIGHT - _TOP - _BOTTOM
    step = inner_w / max(len(values) - 1, 1)
    return " ".join(
        f"{_LEFT + i * step:.1f},{_TOP + inner_h - (v / ceiling) * inner_h:.1f}"
        for i, v in enumerate(values)
    )


def _frame(title: str, top_label: str, points: Sequence[ActivityPoint], body: str) -> str:
    bottom = HEIGHT - _BOTTOM
    first = _clock(points[0].bucket_start) if points else ""
    last = _clock(points[-1].bucket_start) if points else ""
    return (
        f'<svg class="plot" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>"
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" class="axis"/>'
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{WIDTH - _RIGHT}" y2="{bottom}" class="axis"/>'
        f'<text x="{_LEFT - 4}" y="{_TOP + 8}" text-anchor="end">{escape(top_label)}</text>'
        f'<text x="{_LEFT - 4}" y="{bottom}" text-anchor="end">0</text>'
        f'<text x="{_LEFT}" y="{HEIGHT - 6}">{escape(first)}</text>'
        f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - 6}" text-anchor="end">{escape(last)} UTC</text>'
        f"{body}</svg>"
    )


def throughput_svg(points: Sequence[ActivityPoint], bucket_s: int) -> str:
    """Attempts per bucket (and the delivered part of them) over time."""
    ceiling = float(max((p.attempts for p in points), default=0) or 1)
    attempts = [float(p.attempts) for p in points]
    delivered = [float(p.attempts - p.failures) for p in points]
    body = (
        f'<polyline class="attempts" fill="none" points="{_polyline(attempts, ceiling)}"/>'
        f'<polyline class="delivered" fill="none" points="{_polyline(delivered, ceiling)}"/>'
    )
    title = f"Attempts (grey) and deliveries (green) per {bucket_s} s"
    return _frame(title, f"{ceiling:g}", points, body)


def failure_rate_svg(points: Sequence[ActivityPoint], bucket_s: int) -> str:
    """Share of attempts that failed, per bucket (0 where there were none)."""
    rates = [100.0 * p.failures / p.attempts if p.attempts else 0.0 for p in points]
    body = f'<polyline class="failures" fill="none" points="{_polyline(rates, 100.0)}"/>'
    return _frame(f"Failure rate (%) per {bucket_s} s", "100%", points, body)
