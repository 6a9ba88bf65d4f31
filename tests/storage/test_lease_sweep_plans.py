"""The sweep of expired leases reads the index of in-flight deliveries on both dialects.

Migration 0013 dropped ``deliveries_leased`` (the same rows indexed by ``lease_until``): the sweep
runs every few seconds in every process, and must read at most what is in flight, never every
delivery (a million scheduled retries, say).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg

from postback.store import open_storage
from postback.store.queries import load_queries
from postback.store.sealing import Sealer
from tests.support.postgres import POSTGRES_URL, fresh_schema


async def test_sqlite_sweeps_expired_leases_through_the_in_flight_index(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}", Sealer.ephemeral())
    await storage.open()
    await storage.close()
    sql = load_queries("sqlite")["expire_leases"]
    with sqlite3.connect(tmp_path / "p.db") as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, {"now": 0})]
    assert "deliveries_leased" not in names
    assert plan == ["SCAN deliveries USING INDEX deliveries_endpoint_in_flight"], plan


async def test_postgres_sweeps_expired_leases_through_the_in_flight_index() -> None:
    async with fresh_schema() as url:
        storage = open_storage(url, Sealer.ephemeral())
        await storage.open()
        await storage.close()
        schema = url.rsplit("schema=", 1)[1]
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
        try:
            sql = load_queries("postgres")["expire_leases"].replace(":now", "$1")
            indexes = {
                r["indexname"]
                for r in await conn.fetch(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = $1", schema
                )
            }
            plan = [r[0] for r in await conn.fetch("EXPLAIN " + sql, 0)]
        finally:
            await conn.close()
    assert "deliveries_leased" not in indexes
    assert any("deliveries_endpoint_in_flight" in step for step in plan), plan
    assert not any("Seq Scan" in step for step in plan), plan
