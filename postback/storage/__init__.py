"""Storage adapters behind one interface (``postback.storage.base.Storage``)."""

from __future__ import annotations

from postback.sealing import Sealer
from postback.storage.base import Storage, StorageError, StorageUnavailable


def open_storage(database_url: str, sealer: Sealer | None = None) -> Storage:
    """The adapter for a ``POSTBACK_DATABASE_URL`` (``sqlite:///path`` or ``postgresql://…``).

    ``sealer`` seals credentials at rest; without one a throw-away key is used (tests, tools).
    """
    if database_url.startswith("sqlite://"):
        from postback.storage.sqlite import SQLiteStorage

        return SQLiteStorage.from_url(database_url, sealer)
    if database_url.startswith(("postgresql://", "postgres://")):
        from postback.storage.postgres import PostgresStorage

        return PostgresStorage.from_url(database_url, sealer)
    scheme = database_url.split(":", 1)[0]
    raise StorageError(
        f"unsupported database URL scheme {scheme!r}: expected sqlite:///path/to/file.db "
        "or postgresql://user@host:5432/dbname"
    )


__all__ = ["Storage", "StorageError", "StorageUnavailable", "open_storage"]
