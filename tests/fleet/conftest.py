from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from postback.ingest import MessageSubmission, Services
from postback.store import open_storage
from postback.store.base import Storage
from tests.support.payloads import ANY_OBJECT
from tests.support.processes import TEST_ALLOWED, TEST_SEALER


@dataclass
class Fleet:
    """A migrated PostgreSQL schema with one account (event type "t" registered), driven
    through the service directly while the workers under test run as subprocesses."""

    storage: Storage
    service: Services
    account_id: str

    async def submit(self, count: int, chunk: int = 500) -> None:
        for start in range(0, count, chunk):
            await self.service.messages.submit(
                self.account_id,
                [
                    MessageSubmission(event_type="t", payload=b'{"n":%d}' % n)
                    for n in range(start, min(start + chunk, count))
                ],
            )


@pytest.fixture
async def fleet(postgres_url: str) -> AsyncIterator[Fleet]:
    storage = open_storage(postgres_url, TEST_SEALER)
    await storage.open(migrate=True)
    try:
        service = Services.build(storage, allowed_networks=TEST_ALLOWED)
        account, _key = await service.accounts.create("fleet")
        await service.event_types.create(account.id, "t", ANY_OBJECT)
        yield Fleet(storage, service, account.id)
    finally:
        await storage.close()
