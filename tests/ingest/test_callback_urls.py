"""Per-message callback URLs at ingest: the SSRF guard refuses before anything is stored, and
a batch's new URLs become endpoints together, once each. SQLite in a temp file, no sockets
(every URL here is an address literal: the guard decides without a lookup)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from postback.core.errors import InvalidInput
from postback.core.model import Account
from postback.ingest import MessageSubmission, Services
from postback.store import Storage, open_storage
from tests.support.payloads import mo_text

PAYLOAD = msgspec.json.encode(mo_text("hi"))


def to(url: str) -> MessageSubmission:
    return MessageSubmission(event_type="mo_text", payload=PAYLOAD, callback_url=url)


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[tuple[Storage, Services, Account]]:
    storage = open_storage(f"sqlite:///{tmp_path / 'postback.db'}")
    await storage.open(migrate=True)
    services = Services.build(storage, guard_destinations=True)
    account, _ = await services.accounts.create("acme")
    try:
        yield storage, services, account
    finally:
        await storage.close()


async def test_a_refused_callback_url_refuses_the_batch_before_any_endpoint_is_made(
    guarded: tuple[Storage, Services, Account],
) -> None:
    """The first two URLs are fine, the third is a private address: the error names the
    third message, and no endpoint was created for the first two either."""
    storage, services, account = guarded
    batch = [
        to("https://93.184.216.34/a"),
        to("https://93.184.216.35/b"),
        to("https://10.1.2.3/c"),
        to("https://93.184.216.36/d"),
    ]
    with pytest.raises(InvalidInput) as refused:
        await services.messages.submit(account.id, batch, field_prefix="$")
    assert refused.value.field == "$[2].callback_url"
    assert await storage.list_endpoints(account.id, after=None, limit=10) == []


async def test_concurrent_batches_naming_the_same_new_urls_share_one_endpoint_each(
    guarded: tuple[Storage, Services, Account],
) -> None:
    storage, services, account = guarded
    urls = [f"https://93.184.216.{n}/hook" for n in range(1, 41)]
    results = await asyncio.gather(
        *(services.messages.submit(account.id, [to(u) for u in urls]) for _ in range(4))
    )
    endpoints = await storage.list_endpoints(account.id, after=None, limit=100)
    assert sorted(e.url for e in endpoints) == sorted(urls)
    by_url = {e.url: e.id for e in endpoints}
    for batch in results:
        assert [r.deliveries[0].endpoint_id for r in batch] == [by_url[u] for u in urls]
