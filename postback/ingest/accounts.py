"""Accounts: the platform's customers, found by their id or by the platform's ``external_id``.

Which account a call acts on is decided here (``resolve``): an account key acts on its own
account only (any other is "not found", so ids of other customers cannot be probed); a platform
key or the admin token acts on the account it names.
"""

from __future__ import annotations

import re

from postback.core.errors import Conflict, InvalidInput, NotFound
from postback.core.model import Account
from postback.ingest.context import IngestContext
from postback.ingest.keys import Caller, mint_key

# Usable as a URL path segment unescaped; never "acc_…", so it cannot be mistaken for an id.
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=~-]{0,127}$")


def check_external_id(value: str, field: str = "external_id") -> str:
    if not _EXTERNAL_ID.match(value):
        raise InvalidInput(
            field,
            "external_id must be 1-128 characters: letters, digits and . _ : @ + = ~ -, "
            "starting with a letter or digit",
        )
    if value.startswith("acc_"):
        raise InvalidInput(field, "external_id may not start with acc_ (account ids do)")
    return value


class AccountService:
    def __init__(self, context: IngestContext) -> None:
        self.context = context

    async def create(
        self, name: str, *, external_id: str | None = None, with_key: bool = True
    ) -> tuple[Account, str | None]:
        """A new account and, if ``with_key``, its first API key (returned here, never again)."""
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("name", "account name must be 1-200 characters")
        if external_id is not None:
            check_external_id(external_id)
        account = Account(
            id=self.context.new_id("acc"),
            name=name,
            created_at=self.context.now_ms(),
            external_id=external_id,
        )
        key = mint_key(self.context, account.id, "first key") if with_key else None
        stored = await self.context.storage.create_account(
            account, None if key is None else key.record, None if key is None else key.hash
        )
        if not stored:
            raise Conflict(f"external_id {external_id} belongs to another account")
        return account, None if key is None else key.secret

    async def set_disable_after(self, account_id: str, seconds: int | None) -> bool:
        """The account's auto-disable period (None: the process default); False: no account."""
        return await self.context.storage.set_account_disable_after(account_id, seconds)

    async def get(self, ref: str) -> Account:
        """By id or external id."""
        account = await self.context.storage.account(ref)
        if account is None:
            raise NotFound(f"no account {ref}")
        return account

    async def page(self, query: str | None, after: str | None, limit: int) -> list[Account]:
        """By id; ``query`` matches part of the name or external id, ignoring case."""
        query = query.strip().lower() if query else None
        return await self.context.storage.list_accounts(
            query=query or None, after=after, limit=limit
        )

    async def resolve(self, caller: Caller, ref: str | None, field: str = "account") -> Account:
        """The account a call acts on: ``ref`` (an id or external id) or the key's own."""
        own = caller.account
        if own is not None:
            if (
                ref is None
                or ref == own.id
                or (own.external_id is not None and ref == own.external_id)
            ):
                return own
            raise NotFound(f"no account {ref}")
        if ref is None:
            raise InvalidInput(
                field,
                "a platform key acts on the account it names: use /v1/accounts/{account}/... "
                "or give `account`",
            )
        return await self.get(ref)
