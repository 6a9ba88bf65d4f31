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


@pytest.mark.parametrize(
    "name",
    [
        "kill_endpoint_deliveries",
        "hold_endpoint_deliveries",
        "replay_dead_since",
        "endpoint_backlog",
        "endpoint_health",
    ],
)
async def test_an_endpoints_live_deliveries_are_found_through_its_partial_indexes(
    tmp_path: Path, name: str
) -> None:
    """No index on (endpoint_id, state) since 0011 (it moved an entry at every change of
    state): what looks for an endpoint's pending, in-flight or dead deliveries names each state
    so that its partial index serves it, never a scan of every delivery."""
    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}", Sealer.ephemeral())
    await storage.open()
    await storage.close()
    sql = load_queries("sqlite")[name]
    params = {p: "[]" for p in re.findall(r":(\w+)", sql)}
    with sqlite3.connect(tmp_path / "p.db") as conn:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    on_deliveries = [step for step in plan if re.match(r"(SCAN|SEARCH) deliveries\b", step)]
    assert on_deliveries, plan
    assert all(" USING " in step for step in on_deliveries), plan  # an index or the rowid
    partial = ("deliveries_endpoint_due", "deliveries_endpoint_in_flight", "deliveries_dead")
    assert any(index in step for step in on_deliveries for index in partial), plan
