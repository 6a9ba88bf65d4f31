"""API keys: who is calling, and the keys' life (create, list, rotate, revoke).

A key is shown once, when it is made; only its SHA-256 hash is stored, with its first
characters and last four to recognise it in a listing. Account keys act on their own account;
platform keys (no account) act on every account; the operator's admin token is a ``Caller`` too.

Keys that were looked up are remembered for ``KEY_CACHE_TTL_S`` only, so a key revoked on one
node of a fleet stops working on every other node within that time.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from postback.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from postback.core.model import Account, ApiKey
from postback.ingest.context import IngestContext

ACCOUNT_KEY_PREFIX = "pbk_"
PLATFORM_KEY_PREFIX = "pbp_"
KEY_CACHE_TTL_S = 0.5
"""How long a looked-up key is trusted without asking the database: revocation takes effect
on every node within this (the promise is 1 s)."""
MAX_ROTATION_GRACE_S = 7 * 24 * 3600


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the operator (admin token: ``key`` None), a platform key (``account``
    None), or an account key (``account`` its account)."""

    key: ApiKey | None
    account: Account | None = None

    @property
    def is_admin(self) -> bool:
        return self.key is None

    @property
    def is_platform(self) -> bool:
        """Platform keys and the admin token act on any account."""
        return self.account is None


ADMIN = Caller(key=None)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly made key: the record, the key itself (shown once) and its hash (stored)."""

    record: ApiKey
    secret: str
    hash: str


def mint_key(context: IngestContext, account_id: str | None, name: str = "") -> NewKey:
    prefix = PLATFORM_KEY_PREFIX if account_id is None else ACCOUNT_KEY_PREFIX
    secret = prefix + secrets.token_urlsafe(32)
    record = ApiKey(
        id=context.new_id("key"),
        account_id=account_id,
        name=name,
        prefix=secret[:8],
        last4=secret[-4:],
        created_at=context.now_ms(),
    )
    return NewKey(record=record, secret=secret, hash=hash_api_key(secret))


def check_key_name(name: str, field: str = "name") -> str:
    name = name.strip()
    if len(name) > 200:
        raise InvalidInput(field, "a key's name may have at most 200 characters")
    return name


class KeyService:
    def __init__(self, context: IngestContext) -> None:
        self.context = context
        self._cache: dict[str, tuple[int, Caller]] = {}

    async def authenticate(self, api_key: str) -> Caller | None:
        """The caller this key stands for, or None when it is unknown or revoked."""
        key_hash = hash_api_key(api_key)
        now = self.context.now_ms()
        cached = self._cache.get(key_hash)
        if cached is not None:
            trusted_until, caller = cached
            if now < trusted_until and caller.key is not None and caller.key.live(now):
                return caller
            del self._cache[key_hash]
        found = await self.context.storage.live_key(key_hash, now)
        if found is None:
            return None
        caller = Caller(key=found[0], account=found[1])
        if len(self._cache) > 10_000:
            self._cache.clear()  # bounded; a miss costs one indexed read
        self._cache[key_hash] = (now + int(KEY_CACHE_TTL_S * 1000), caller)
        return caller

    def _forget(self, key_id: str) -> None:
        """Drop a changed key from this node's cache at once (other nodes: within the TTL)."""
        for key_hash, (_, caller) in list(self._cache.items()):
            if caller.key is not None and caller.key.id == key_id:
                del self._cache[key_hash]

    async def create(self, caller: Caller, account: Account | None, name: str = "") -> NewKey:
        """A key for ``account``, or a platform key (``account`` None: the admin token only)."""
        if account is None and not caller.is_admin:
            raise Forbidden("only the admin token creates platform keys")
        if account is not None and caller.account is not None and caller.account.id != account.id:
            raise NotFound(f"no account {account.id}")
        new = mint_key(self.context, None if account is None else account.id, check_key_name(name))
        await self.context.storage.create_api_key(new.record, new.hash)
        return new

    async def page(
        self, caller: Caller, account: Account | None, *, after: str | None, limit: int
    ) -> list[ApiKey]:
        """An account key sees its account's keys; platform keys see all (or ``account``'s)."""
        if caller.account is not None:
            account = caller.account
        account_id = None if account is None else account.id
        return await self.context.storage.list_api_keys(account_id, after=after, limit=limit)

    async def get(self, caller: Caller, key_id: str) -> ApiKey:
        key = await self.context.storage.get_api_key(key_id)
        if key is None or (caller.account is not None and key.account_id != caller.account.id):
            raise NotFound(f"no API key {key_id}")
        return key

    async def rotate(self, caller: Caller, key_id: str, grace_s: int = 0) -> NewKey:
        """A new key with the old one's scope and name; the old one works ``grace_s`` more."""
        if not 0 <= grace_s <= MAX_ROTATION_GRACE_S:
            raise InvalidInput("grace_s", f"grace_s must be from 0 to {MAX_ROTATION_GRACE_S}")
        old = await self.get(caller, key_id)
        new = mint_key(self.context, old.account_id, old.name)
        old_until = self.context.now_ms() + grace_s * 1000
        if not await self.context.storage.rotate_api_key(old.id, new.record, new.hash, old_until):
            raise Conflict(f"API key {key_id} is revoked; create a new one")
        self._forget(old.id)
        return new

    async def revoke(self, caller: Caller, key_id: str) -> ApiKey:
        """The key stops working now (on other nodes within ``KEY_CACHE_TTL_S``)."""
        key = await self.get(caller, key_id)
        await self.context.storage.revoke_api_key(key.id, self.context.now_ms())
        self._forget(key.id)
        return await self.get(caller, key_id)
