"""Versioned migrations: refused when missing or too new, and both dialects end up alike."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from postback.store import open_storage
from postback.store.base import SchemaMismatch
from postback.store.queries import migration_files
from postback.store.sealing import Sealer
from tests.support.postgres import POSTGRES_URL, fresh_schema
from tests.support.processes import postback_env
from tests.support.service import free_port


def test_both_dialects_have_the_same_migrations() -> None:
    assert sorted(migration_files("sqlite")) == sorted(migration_files("postgres"))


async def test_sqlite_refuses_unmigrated_and_newer_schemas(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with pytest.raises(SchemaMismatch, match="postback migrate"):
        await open_storage(url, Sealer.ephemeral()).open(migrate=False)
    storage = open_storage(url, Sealer.ephemeral())
    await storage.open(migrate=True)
    await storage.close()
    checked = open_storage(url, Sealer.ephemeral())
    await checked.open(migrate=False)  # now up to date
    await checked.close()
    with sqlite3.connect(tmp_path / "m.db") as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (9999, 0)")
    with pytest.raises(SchemaMismatch, match="upgrade Postback"):
        await open_storage(url, Sealer.ephemeral()).open(migrate=True)


async def test_postgres_refuses_unmigrated_and_newer_schemas() -> None:
    async with fresh_schema() as url:
        with pytest.raises(SchemaMismatch, match="postback migrate"):
            await open_storage(url, Sealer.ephemeral()).open(migrate=False)
        storage = open_storage(url, Sealer.ephemeral())
        await storage.open(migrate=True)
        await storage.close()
        schema = url.rsplit("schema=", 1)[1]
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f"INSERT INTO {schema}.schema_migrations (version) VALUES (9999)")
        finally:
            await conn.close()
        with pytest.raises(SchemaMismatch, match="upgrade Postback"):
            await open_storage(url, Sealer.ephemeral()).open(migrate=True)


async def test_dialects_define_the_same_tables_and_columns(tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'same.db'}"
    storage = open_storage(sqlite_url, Sealer.ephemeral())
    await storage.open()
    await storage.close()
    with sqlite3.connect(tmp_path / "same.db") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        sqlite_schema = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    async with fresh_schema() as url:
        pg = open_storage(url, Sealer.ephemeral())
        await pg.open()
        await pg.close()
        schema = url.rsplit("schema=", 1)[1]
        conn2 = await asyncpg.connect(POSTGRES_URL)
        try:
            rows = await conn2.fetch(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = $1",
                schema,
            )
        finally:
            await conn2.close()
    pg_schema: dict[str, set[str]] = {}
    for row in rows:
        pg_schema.setdefault(row["table_name"], set()).add(row["column_name"])
    # PostgreSQL keeps a surrogate key for signing secrets where SQLite has its rowid.
    pg_schema["signing_secrets"].discard("id")
    # SQLite lists deliveries by endpoint in a table of its own (its migration 0011), where
    # PostgreSQL keeps an index.
    for table in ("endpoint_deliveries", "endpoint_deliveries_upto"):
        assert sqlite_schema.pop(table)
    assert sqlite_schema == pg_schema


def test_serve_refuses_an_unmigrated_postgres_with_one_clear_line() -> None:
    url = f"{POSTGRES_URL}?schema=pbt_never_migrated"
    result = subprocess.run(
        [sys.executable, "-m", "postback", "serve", "--port", str(free_port())],
        env=postback_env(url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "run `postback migrate`" in result.stderr.strip().splitlines()[-1]
    assert "pbt_never_migrated" in result.stderr  # and it created nothing on its way out


async def test_postback_migrate_command() -> None:
    async with fresh_schema() as url:
        result = subprocess.run(
            [sys.executable, "-m", "postback", "migrate"],
            env=postback_env(url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0 and "up to date" in result.stdout
        checked = open_storage(url, Sealer.ephemeral())
        await checked.open(migrate=False)
        await checked.close()
