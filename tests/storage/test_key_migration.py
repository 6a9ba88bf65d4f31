"""Migration 0008 rebuilds the API key table: keys made before it keep working, on both backends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg

from postback.ingest.keys import hash_api_key
from postback.store import open_storage
from postback.store.base import Storage
from postback.store.queries import migration_files
from postback.store.sealing import Sealer
from tests.support.postgres import POSTGRES_URL, fresh_schema

OLD_KEY = "pbk_made-before-platform-keys"
KEY_HASH = hash_api_key(OLD_KEY)


async def check_old_key_survives(storage: Storage) -> None:
    found = await storage.live_key(KEY_HASH, 2_000_000_000_000)
    assert found is not None
    key, account = found
    assert account is not None and account.id == "acc_OLD" and account.external_id is None
    assert key.account_id == "acc_OLD" and not key.platform
    assert key.id == "key_" + KEY_HASH[:26].upper() and key.revoked_at is None
    assert await storage.list_api_keys("acc_OLD", after=None, limit=10) == [key]
    assert await storage.revoke_api_key(key.id, 2_000_000_000_000)
    assert await storage.live_key(KEY_HASH, 2_000_000_000_000) is None


async def test_sqlite_keys_made_before_0008_keep_working(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
        for version, sql in sorted(migration_files("sqlite").items()):
            if version < 8:
                conn.executescript(sql)
                conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        conn.execute("INSERT INTO accounts (id, name, created_at) VALUES ('acc_OLD', 'old', 1)")
        conn.execute(
            "INSERT INTO api_keys (key_hash, account_id, created_at) VALUES (?, 'acc_OLD', 1)",
            (KEY_HASH,),
        )
    storage = open_storage(f"sqlite:///{path}", Sealer.ephemeral())
    await storage.open(migrate=True)
    try:
        await check_old_key_survives(storage)
    finally:
        await storage.close()


async def test_postgres_keys_made_before_0008_keep_working() -> None:
    async with fresh_schema() as url:
        schema = url.rsplit("schema=", 1)[1]
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f"CREATE SCHEMA {schema}")
            await conn.execute(f"SET search_path TO {schema}")
            await conn.execute(
                "CREATE TABLE schema_migrations "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for version, sql in sorted(migration_files("postgres").items()):
                if version < 8:
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES ($1)", version
                    )
            await conn.execute(
                "INSERT INTO accounts (id, name, created_at) VALUES ('acc_OLD', 'old', 1)"
            )
            await conn.execute(
                "INSERT INTO api_keys (key_hash, account_id, created_at) VALUES ($1, 'acc_OLD', 1)",
                KEY_HASH,
            )
        finally:
            await conn.close()
        storage = open_storage(url, Sealer.ephemeral())
        await storage.open(migrate=True)
        try:
            await check_old_key_survives(storage)
        finally:
            await storage.close()
