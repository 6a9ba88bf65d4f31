"""Loading named SQL queries and numbered migration files shipped with the package."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def load_queries(dialect: str) -> dict[str, str]:
    """``{name: sql}`` from ``sql/<dialect>/queries.sql``, split at ``-- name:`` lines."""
    text = resources.files("postback.store").joinpath("sql", dialect, "queries.sql").read_text()
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = "\n".join(
            line for line in body.strip().splitlines() if not line.lstrip().startswith("--")
        )
        queries[name] = sql.strip().rstrip(";")
    return queries


@cache
def migration_files(dialect: str) -> dict[int, str]:
    """``{version: sql}`` from ``sql/<dialect>/migrations/NNNN_name.sql``."""
    folder = resources.files("postback.store").joinpath("sql", dialect, "migrations")
    migrations: dict[int, str] = {}
    for entry in folder.iterdir():
        match = re.match(r"^(\d{4})_\w+\.sql$", entry.name)
        if match:
            migrations[int(match.group(1))] = entry.read_text()
    return migrations


_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@cache
def to_positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """Rewrite ``:name`` parameters as ``$1, $2 …`` (asyncpg's style); ``::type`` casts stay."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAM.sub(number, sql), tuple(names)
