"""SQLite lists an endpoint's deliveries from endpoint_deliveries, filled about once a second by
the writer, and reads the rows committed since from ``deliveries`` (migration 0011): a listing
never misses a delivery, whichever side holds it, and never shows one twice."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postback.core.model import DeliveryState
from postback.store.sealing import Sealer
from postback.store.sqlite import SQLiteStorage
from tests.storage.contract import T0, WINDOW, account, endpoint, message, record


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    storage = SQLiteStorage(str(tmp_path / "listing.db"), Sealer.ephemeral())
    await storage.open()
    yield storage
    await storage.close()


def listing_every(storage: SQLiteStorage, seconds: float) -> None:
    assert storage._writer is not None
    storage._writer.list_every_s = seconds


def listed(storage: SQLiteStorage) -> set[str]:
    with sqlite3.connect(storage.path) as conn:
        return {r[0] for r in conn.execute("SELECT delivery_id FROM endpoint_deliveries")}


async def test_pages_run_across_listed_and_newer_deliveries_in_order(
    storage: SQLiteStorage,
) -> None:
    acct = await account(storage)
    a = await endpoint(storage, acct.id, event_types=("a",))
    await endpoint(storage, acct.id, event_types=("b",))
    listing_every(storage, 3600)
    ids: list[str] = []
    for _ in range(3):
        [r, _b] = await storage.ingest(acct.id, [message("a"), message("b")], T0, WINDOW)
        ids += [d.id for d in r.deliveries]
    listing_every(storage, 0)  # this commit lists all of the above and its own
    [r] = await storage.ingest(acct.id, [message("a")], T0, WINDOW)
    ids += [d.id for d in r.deliveries]
    listing_every(storage, 3600)
    for _ in range(3):
        [r] = await storage.ingest(acct.id, [message("a")], T0, WINDOW)
        ids += [d.id for d in r.deliveries]
    # Four of a's deliveries are in endpoint_deliveries, three only in `deliveries`.
    assert len(set(ids[:4]) & listed(storage)) == 4 and not set(ids[4:]) & listed(storage)

    pages: list[str] = []
    after = None
    while True:
        page = await storage.list_deliveries(acct.id, endpoint_id=a.id, limit=2, after=after)
        if not page:
            break
        assert len(page) <= 2
        pages += [d.id for d in page]
        after = page[-1].id
    assert pages == sorted(ids, reverse=True)
    assert all(
        d.endpoint_id == a.id for d in await storage.list_deliveries(acct.id, endpoint_id=a.id)
    )

    # The other filters hold on both sides: one delivered on each.
    claimed = {c.delivery_id for c in await storage.claim(T0, 100, 60_000)}
    done = [ids[0], ids[-1]]
    assert set(done) <= claimed
    await storage.record([record(i, DeliveryState.DELIVERED) for i in done])
    found = await storage.list_deliveries(acct.id, endpoint_id=a.id, state=DeliveryState.DELIVERED)
    assert [d.id for d in found] == sorted(done, reverse=True)
    found = await storage.list_deliveries(acct.id, endpoint_id=a.id, state=DeliveryState.DELIVERING)
    assert len(found) == len(ids) - 2


async def test_a_delivery_given_a_used_rowid_again_is_listed_after_the_next_commit(
    storage: SQLiteStorage,
) -> None:
    """Deleting the newest rows by hand makes SQLite hand their rowids out again, below the mark
    up to which endpoint_deliveries lists: the next listing pass lists every row again."""
    acct = await account(storage)
    ep = await endpoint(storage, acct.id)
    listing_every(storage, 0)
    results = await storage.ingest(acct.id, [message() for _ in range(3)], T0, WINDOW)
    with sqlite3.connect(storage.path) as conn:
        conn.execute("DELETE FROM deliveries WHERE id = ?", (results[-1].deliveries[0].id,))
    [again] = await storage.ingest(acct.id, [message()], T0, WINDOW)
    new_id = again.deliveries[0].id
    await storage.ingest(acct.id, [message()], T0, WINDOW)  # the next commit heals the listing
    assert new_id in listed(storage)
    found = {d.id for d in await storage.list_deliveries(acct.id, endpoint_id=ep.id)}
    assert new_id in found and len(found) == 4


async def test_purge_forgets_listed_deliveries_and_keeps_the_newest_message(
    storage: SQLiteStorage,
) -> None:
    acct = await account(storage)
    ep = await endpoint(storage, acct.id)
    listing_every(storage, 0)
    results = await storage.ingest(acct.id, [message() for _ in range(3)], T0, WINDOW)
    claimed = await storage.claim(T0, 10, 60_000)
    await storage.record([record(c.delivery_id, DeliveryState.DELIVERED) for c in claimed])
    # All three are old and finished; the newest delivery's message stays, so that no new row
    # can be given a rowid that endpoint_deliveries has already passed.
    assert await storage.purge(T0 + WINDOW, 100) == 2
    newest = results[-1].deliveries[0].id
    assert listed(storage) == {newest}
    assert [d.id for d in await storage.list_deliveries(acct.id, endpoint_id=ep.id)] == [newest]
    [later] = await storage.ingest(acct.id, [message()], T0 + WINDOW, WINDOW)
    found = [d.id for d in await storage.list_deliveries(acct.id, endpoint_id=ep.id)]
    assert found == [later.deliveries[0].id, newest]


async def test_migration_0011_lists_the_deliveries_already_stored(tmp_path: Path) -> None:
    """A database from before 0011, with deliveries in it: the migration lists them all, so a
    listing by endpoint after the upgrade finds every one through endpoint_deliveries."""
    path = tmp_path / "old.db"
    storage = SQLiteStorage(str(path), Sealer.ephemeral())
    await storage.open()
    acct = await account(storage)
    ep = await endpoint(storage, acct.id)
    results = await storage.ingest(acct.id, [message() for _ in range(5)], T0, WINDOW)
    await storage.close()
    with sqlite3.connect(path) as conn:  # back to schema version 10
        conn.executescript(
            "DROP TABLE endpoint_deliveries; DROP TABLE endpoint_deliveries_upto;"
            "CREATE INDEX deliveries_by_endpoint ON deliveries(endpoint_id, state);"
            "DELETE FROM schema_migrations WHERE version = 11;"
        )
    storage = SQLiteStorage(str(path), Sealer.ephemeral())
    await storage.open()
    try:
        listing_every(storage, 3600)  # nothing listed by the writer: only the migration
        ids = sorted((r.deliveries[0].id for r in results), reverse=True)
        assert listed(storage) == set(ids)
        found = await storage.list_deliveries(acct.id, endpoint_id=ep.id)
        assert [d.id for d in found] == ids
        with sqlite3.connect(path) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            upto = conn.execute("SELECT upto FROM endpoint_deliveries_upto").fetchone()[0]
            newest = conn.execute("SELECT max(rowid) FROM deliveries").fetchone()[0]
        assert "deliveries_by_endpoint" not in names and upto == newest
    finally:
        await storage.close()
