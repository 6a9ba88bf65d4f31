"""The SQLite plans of the hot claim-side counts: SQLite keeps no statistics here, so a plan
can silently fall back to a dearer index (measured: 3x the writer's time per endpoint)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from postback.core.model import DeliveryState
from postback.store import open_storage
from postback.store.queries import load_queries
from postback.store.sealing import Sealer
from postback.store.sqlite import _STATE_INDEXED, delivery_listing


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


def plan_of(path: Path, sql: str, params: dict[str, object]) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


async def empty_database(tmp_path: Path) -> Path:
    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}", Sealer.ephemeral())
    await storage.open()
    await storage.close()
    return tmp_path / "p.db"


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
    """No index on (endpoint_id, state) since 0011: what looks for an endpoint's pending,
    in-flight or dead deliveries names each state so that its partial index serves it, never a
    scan of every delivery."""
    sql = load_queries("sqlite")[name]
    plan = plan_of(
        await empty_database(tmp_path), sql, {p: "[]" for p in re.findall(r":(\w+)", sql)}
    )
    on_deliveries = [step for step in plan if re.match(r"(SCAN|SEARCH) deliveries\b", step)]
    assert on_deliveries, plan
    assert all(" USING " in step for step in on_deliveries), plan  # an index or the rowid
    partial = ("deliveries_endpoint_due", "deliveries_endpoint_in_flight", "deliveries_dead")
    assert any(index in step for step in on_deliveries for index in partial), plan


@pytest.mark.parametrize("state", [None, DeliveryState.DELIVERED, *_STATE_INDEXED])
async def test_an_endpoints_deliveries_are_listed_without_walking_its_account(
    tmp_path: Path, state: DeliveryState | None
) -> None:
    """By endpoint_deliveries' primary key and a range of the newest rowids, or a live state's
    partial index; never the account's index, whose walk grows with the account's other
    endpoints (the planner, with no statistics, picks it)."""
    path = await empty_database(tmp_path)
    sql, params = delivery_listing("acc", endpoint_id="ep", state=state, after="dlv_x", limit=50)
    plan = plan_of(path, sql, params)
    assert not any("deliveries_by_account" in step for step in plan), plan
    if state is None or state is DeliveryState.DELIVERED:
        assert any("USING PRIMARY KEY (endpoint_id=? AND delivery_id<?)" in s for s in plan), plan
        assert any("USING INTEGER PRIMARY KEY (rowid>?)" in s for s in plan), plan
    else:
        assert any(_STATE_INDEXED[state] in step for step in plan), plan


async def test_an_endpoints_activity_reads_its_listed_deliveries(tmp_path: Path) -> None:
    sql = load_queries("sqlite")["endpoint_activity"]
    plan = plan_of(
        await empty_database(tmp_path), sql, {p: "x" for p in re.findall(r":(\w+)", sql)}
    )
    assert any("endpoint_deliveries USING PRIMARY KEY (endpoint_id=?)" in s for s in plan), plan
    assert any("USING INTEGER PRIMARY KEY (rowid>?)" in s for s in plan), plan
    assert any("attempts_by_delivery" in step for step in plan), plan
