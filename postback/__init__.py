"""Postback: self-hosted callback (webhook) delivery.

The public surface is what ``__all__`` lists, plus ``postback.receiver`` for the receiving
side; everything else may change between releases. The client is imported lazily, so that
``postback.receiver`` stays importable without the HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from postback import native as _native

_native.install()  # the compiled hot modules, where built from the current sources

__version__ = "0.1.0"

__all__ = ["APIError", "Client", "PostbackError", "SyncClient", "__version__"]

if TYPE_CHECKING:
    from postback.client import APIError, Client, SyncClient
    from postback.core.errors import PostbackError


def __getattr__(name: str) -> Any:
    if name == "PostbackError":
        from postback.core.errors import PostbackError

        return PostbackError
    if name in ("APIError", "Client", "SyncClient"):
        from postback import client

        return getattr(client, name)
    raise AttributeError(f"module 'postback' has no attribute {name!r}")
