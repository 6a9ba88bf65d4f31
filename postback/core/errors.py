"""Every exception Postback raises, under one root, so a caller knows what to catch.

    PostbackError                   anything Postback raises on purpose
    +-- InvalidInput (ValueError)   input refused; ``field`` is the JSON path of the culprit
    |   +-- PolicyError             a retry policy that cannot work (core/policy.py)
    |   +-- PayloadInvalid          a payload that breaks its event type's schema (core/payloads.py)
    |   +-- SchemaInvalid           a JSON Schema that cannot be compiled (core/payloads.py)
    |   +-- TLSConfigError          a client certificate / key / CA that does not load
    |   +-- ConfigError             a setting of the process (environment, flags)
    +-- NotFound (LookupError)      no such object in this account
    +-- Forbidden                   the caller's credentials may not do this (an account key
    |                               creating a platform key)
    +-- Conflict                    valid, but the object's state forbids it
    |   +-- IdempotencyConflict     an idempotency key reused for a different request
    +-- StorageError                a storage failure retrying will not fix
    |   +-- SchemaMismatch          the database schema is not the one this Postback expects
    |   +-- StorageUnavailable      the database cannot be reached now; retry later
    |       +-- StorageFull         the disk (or database) is full; retry once space is freed
    +-- SignatureError (ValueError) a signing secret or signature that cannot be used
    +-- SealingError (ValueError)   a sealed secret that cannot be opened with this key
    +-- AuthError                   credentials for an endpoint could not be obtained (OAuth)
    +-- WebhookVerificationError    receiver: a callback's signature does not verify
    +-- PayloadError (ValueError)   receiver: a callback's payload does not parse
    +-- APIError                    client: the API answered an error (or could not be reached)
    +-- CLIError                    command line: a message for the user, printed without traceback
    +-- SessionTokenInvalid         UI: a portal link or session forged, expired or for another use

Driver and library exceptions are translated into these at the seams (storage adapters,
transports, the API); nothing else leaks to a caller.
"""

from __future__ import annotations


class PostbackError(Exception):
    """The root of every exception Postback raises on purpose."""


class InvalidInput(PostbackError, ValueError):
    """Input that cannot be accepted; ``field`` is the JSON path of the offending value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class NotFound(PostbackError, LookupError):
    """No such object in this account (another account's ids are not found either)."""


class Forbidden(PostbackError):
    """The caller is known but its credentials do not allow this operation."""


class Conflict(PostbackError):
    """The request is valid but the object's state forbids it."""


class StorageError(PostbackError):
    """A storage operation failed in a way retrying will not fix."""


class SchemaMismatch(StorageError):
    """The schema version is not the one this Postback expects."""


class StorageUnavailable(StorageError):
    """The database is unreachable or busy; the operation may succeed later."""


class StorageFull(StorageUnavailable):
    """The database's disk is full (SQLITE_FULL, PostgreSQL 53100 disk_full): nothing can be
    written until space is freed; reads still work."""


class IdempotencyConflict(Conflict):
    """An idempotency key sent again with a different request (core/idempotency.py).

    ``index`` is the message's position in its batch; ``field`` the JSON path the API names.
    """

    def __init__(self, key: str, index: int = 0, field: str = "idempotency_key") -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for a different request "
            "(event type, payload or callback_url differ); use a new key for a new message"
        )
        self.key = key
        self.index = index
        self.field = field
