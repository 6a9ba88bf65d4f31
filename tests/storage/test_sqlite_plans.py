"""The SQLite plans of the hot claim-side counts: SQLite keeps no statistics here, so a plan
can silently fall back to a dearer index (measured: 3x the writer's time per endpoint)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from postback.store import open_storage
from postback.store.queries import load_queries
from postback.store.sealing import Sealer


@pytest.mark.parametrize("name", ["endpoint_loads", "claim_ready_endpoints"])
async def test_in_flight_counts_read_the_in_flight_index_alone(tmp_path: Path, name: str) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}", Sealer.ephemeral())
    await storage.open()
    await storage.close()
    sql = load_queries("sqlite")[name]
    params = {p: "[]" for p in re.findall(r":(\w+)", sql)}
    with sqlite3.connect(tmp_path / "p.db") as conn:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    counts = [step for step in plan if "SEARCH x " in step]
    assert len(counts) == 2, plan
    # Both counts (all leases, and the other holders') from the index of in-flight rows, which
    # holds the holder: no table row read per lease, no sort of the holders.
    assert all("deliveries_endpoint_in_flight" in step for step in counts), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
