"""Storage adapters behind one interface (``postback.storage.base.Storage``)."""

from __future__ import annotations

from postback.storage.base import Storage, StorageError, StorageUnavailable


def open_storage(database_url: str) -> Storage:
    """The adapter for a ``POSTBACK_DATABASE_URL`` (``sqlite:///path`` or ``postgresql://…``)."""
    if database_url.startswith("sqlite://"):
        from postback.storage.sqlite import SQLiteStorage

        return SQLiteStorage.from_url(database_url)
    if database_url.startswith(("postgresql://", "postgres://")):
        from postback.storage.postgres import PostgresStorage

        return PostgresStorage.from_url(database_url)
    scheme = database_url.split(":", 1)[0]
    raise StorageError(
        f"unsupported database URL scheme {scheme!r}: expected sqlite:///path/to/file.db "
        "or postgresql://user@host:5432/dbname"
    )


__all__ = ["Storage", "StorageError", "StorageUnavailable", "open_storage"]
