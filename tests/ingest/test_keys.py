"""Key life through the domain services, with the clock in hand: two nodes on one database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postback.core.errors import Forbidden, InvalidInput, NotFound
from postback.ingest import Services
from postback.ingest.keys import ADMIN, KEY_CACHE_TTL_S, Caller
from postback.store import open_storage
from postback.store.base import Storage
from tests.support.processes import TEST_SEALER


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    storage = open_storage(f"sqlite:///{tmp_path / 'keys.db'}", TEST_SEALER)
    await storage.open()
    yield storage
    await storage.close()


async def test_a_revoked_key_stops_on_another_node_once_its_cache_entry_expires(
    storage: Storage,
) -> None:
    clock = Clock()
    node_a = Services.build(storage, clock=clock)
    node_b = Services.build(storage, clock=clock)
    account, api_key = await node_a.accounts.create("two nodes")
    assert api_key is not None
    caller = await node_b.keys.authenticate(api_key)
    assert caller is not None and caller.account == account
    [key] = await node_a.keys.page(ADMIN, account, after=None, limit=10)
    await node_a.keys.revoke(ADMIN, key.id)
    assert await node_a.keys.authenticate(api_key) is None  # the revoking node: at once
    clock.now += KEY_CACHE_TTL_S / 2
    assert await node_b.keys.authenticate(api_key) is not None  # trusted from its cache
    clock.now += KEY_CACHE_TTL_S / 2
    assert await node_b.keys.authenticate(api_key) is None  # asked the database again
    assert KEY_CACHE_TTL_S <= 1.0


async def test_a_rotation_grace_period_ends_on_time_even_in_the_cache(storage: Storage) -> None:
    clock = Clock()
    services = Services.build(storage, clock=clock)
    account, api_key = await services.accounts.create("grace")
    assert api_key is not None
    [old] = await services.keys.page(ADMIN, account, after=None, limit=10)
    new = await services.keys.rotate(ADMIN, old.id, grace_s=60)
    assert await services.keys.authenticate(api_key) is not None
    clock.now += 59.9
    assert await services.keys.authenticate(api_key) is not None
    clock.now += 0.1
    assert await services.keys.authenticate(api_key) is None
    assert await services.keys.authenticate(new.secret) is not None


async def test_who_may_make_which_key(storage: Storage) -> None:
    services = Services.build(storage)
    mine, own_key = await services.accounts.create("mine", external_id="mine")
    theirs, _ = await services.accounts.create("theirs")
    assert own_key is not None
    me = await services.keys.authenticate(own_key)
    assert me is not None and not me.is_platform
    platform = await services.keys.create(ADMIN, None, "gateway")
    as_platform = await services.keys.authenticate(platform.secret)
    assert as_platform == Caller(key=platform.record) and as_platform.is_platform
    with pytest.raises(Forbidden):
        await services.keys.create(as_platform, None)
    with pytest.raises(Forbidden):
        await services.keys.create(me, None)
    with pytest.raises(NotFound):
        await services.keys.create(me, theirs)
    with pytest.raises(NotFound):
        await services.accounts.resolve(me, theirs.id)
    assert await services.accounts.resolve(me, "mine") == mine
    assert await services.accounts.resolve(as_platform, "mine") == mine
    with pytest.raises(InvalidInput) as unnamed:
        await services.accounts.resolve(as_platform, None)
    assert unnamed.value.field == "account"
    made = await services.keys.create(as_platform, theirs, "for theirs")
    assert made.record.account_id == theirs.id and made.secret.startswith("pbk_")
    with pytest.raises(NotFound):
        await services.keys.revoke(me, made.record.id)
