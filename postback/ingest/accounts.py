"""Accounts and their API keys: keys are shown once and stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets

from postback.core.errors import InvalidInput
from postback.core.model import Account
from postback.ingest.context import IngestContext

API_KEY_PREFIX = "pbk_"


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class AccountService:
    def __init__(self, context: IngestContext) -> None:
        self.context = context
        self._accounts_by_key: dict[str, Account] = {}

    async def create(self, name: str) -> tuple[Account, str]:
        """A new account and its API key (the key is returned here and never again)."""
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("name", "account name must be 1-200 characters")
        account = Account(
            id=self.context.new_id("acc"), name=name, created_at=self.context.now_ms()
        )
        api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        await self.context.storage.create_account(account, hash_api_key(api_key))
        return account, api_key

    async def authenticate(self, api_key: str) -> Account | None:
        key_hash = hash_api_key(api_key)
        account = self._accounts_by_key.get(key_hash)
        if account is None:
            account = await self.context.storage.account_for_key(key_hash)
            if account is not None:
                self._accounts_by_key[key_hash] = account
        return account
