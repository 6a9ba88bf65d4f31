"""Storage adapters behind one interface (``postback.store.base.Storage``)."""

from __future__ import annotations

from postback.store.base import Storage, StorageError, StorageUnavailable
from postback.store.sealing import Sealer


def open_storage(database_url: str, sealer: Sealer | None = None) -> Storage:
    """The adapter for a ``POSTBACK_DATABASE_URL`` (``sqlite:///path`` or ``postgresql://…``).

    ``sealer`` seals credentials at rest; without one a throw-away key is used (tests, tools).
    """
    if database_url.startswith("sqlite://"):
        from postback.store.sqlite import SQLiteStorage

        return SQLiteStorage.from_url(database_url, sealer)
    if database_url.startswith(("postgresql://", "postgres://")):
        from postback.store.postgres import PostgresStorage

        return PostgresStorage.from_url(database_url, sealer)
    scheme = database_url.split(":", 1)[0]
    raise StorageError(
        f"unsupported database URL scheme {scheme!r}: expected sqlite:///path/to/file.db "
        "or postgresql://user@host:5432/dbname"
    )


__all__ = ["Storage", "StorageError", "StorageUnavailable", "open_storage"]
