"""A fresh PostgreSQL schema per test on the machine's real server.

The server is expected at POSTBACK_TEST_POSTGRES_URL (default 127.0.0.1:5432, database
``test``, trust auth). When it is missing, tests fail: they never skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

POSTGRES_URL = os.environ.get("POSTBACK_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """Yield a database URL whose ``schema`` is new and empty; drop it afterwards."""
    schema = f"pbt_{secrets.token_hex(6)}"
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()
