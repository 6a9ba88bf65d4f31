"""The one migration rule both adapters follow: which versions to apply, or why to refuse.

Adapters read the applied versions and run the files; this decides, so SQLite and PostgreSQL
refuse and upgrade in exactly the same cases.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping

from postback.core.errors import SchemaMismatch


def pending_migrations(
    applied: Collection[int], known: Mapping[int, str], *, migrate: bool, database: str
) -> list[int]:
    """Versions to apply in order; SchemaMismatch when the schema is newer than this Postback
    or, without ``migrate``, when it is older (``serve`` on PostgreSQL waits for an operator)."""
    newest_known = max(known) if known else 0
    if applied and max(applied) > newest_known:
        raise SchemaMismatch(
            f"{database} has schema version {max(applied)}, newer than this Postback knows "
            f"({newest_known}): upgrade Postback"
        )
    pending = sorted(v for v in known if v not in applied)
    if pending and not migrate:
        raise SchemaMismatch(f"{database} needs migrations {pending}: run `postback migrate`")
    return pending


def split_statements(script: str) -> list[str]:
    """The statements of a migration file, triggers (BEGIN ... END;) kept whole."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        text = "\n".join(current)
        if sqlite3.complete_statement(text):
            if text.strip().rstrip(";").strip():
                statements.append(text.strip())
            current = []
    rest = "\n".join(current).strip()
    if rest:
        statements.append(rest)
    return statements
