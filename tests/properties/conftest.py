"""Hypothesis settings for the property suites: no per-example deadline (two shared cores
make timings meaningless), and a fixed seed in CI so a red run can be replayed as it was."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "postback",
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("postback")
