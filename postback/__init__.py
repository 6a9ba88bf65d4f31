"""Postback: self-hosted callback (webhook) delivery.

The public surface is what ``__all__`` lists; everything else may change between releases.
"""

from __future__ import annotations

__version__ = "0.1.0"

from postback.client import Client, PostbackError, SyncClient

__all__ = ["Client", "PostbackError", "SyncClient", "__version__"]
