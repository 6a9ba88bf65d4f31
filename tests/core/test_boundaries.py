"""The rules of the house, read from the source: who may import whom, and where SQL lives.

Imports are read with ``ast`` (lazy imports inside functions count too), so a rule is broken by
writing the import, not only by running it. The rooms are the packages under ``postback/``;
``client`` is ``postback/client.py``.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "postback"
ROOMS = [*sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()), "client"]

# room -> the rooms of ours it must never import.
FORBIDDEN: dict[str, set[str]] = {
    # The pure core imports nothing of ours outside itself.
    "core": set(ROOMS) - {"core"},
    # What `pip install postback` ships: the receiver SDK and the client stand on the core alone.
    "receiver": set(ROOMS) - {"core", "receiver"},
    "client": set(ROOMS) - {"core"},
    # Adapters never reach up into the rooms that use them.
    "store": {"ingest", "dispatch", "api", "cli"},
    "transports": {"ingest", "dispatch", "api", "cli", "store"},
    # The domain operations know nothing of HTTP handlers, processes or the dispatcher.
    "ingest": {"api", "cli", "dispatch"},
    "dispatch": {"ingest", "api", "cli"},
    # The API and the CLI reach data only through ingest.
    "api": {"store", "dispatch", "cli"},
    "ui": {"store", "dispatch", "cli", "api"},
    "cli": {"store"},
    "observe": set(ROOMS) - {"core", "observe"},
}

# file -> rooms it may import although its room may not: process wiring must open the store.
EXCEPTIONS: dict[str, set[str]] = {"cli/serve.py": {"store", "dispatch"}}

# Third-party distributions a room may import (its whole import closure, for the two rooms
# that `pip install postback` ships). Everything else of theirs must be in the stdlib.
THIRD_PARTY: dict[str, set[str]] = {
    "core": {"msgspec", "jsonschema", "jsonschema_rs"},
    "receiver": {"msgspec"},
    "client": {"msgspec", "aiohttp"},
}


def room_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return "client" if parts == ("client.py",) else parts[0]


@cache
def imports_of(path: Path) -> frozenset[str]:
    """Every module ``path`` imports, absolute, including lazy and TYPE_CHECKING imports."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(("postback", *path.relative_to(PACKAGE).parts[:-1]))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # `from postback import receiver` imports the subpackage postback.receiver.
            for alias in node.names:
                candidate = PACKAGE.parent.joinpath(*f"{module}.{alias.name}".split("."))
                if candidate.is_dir() or candidate.with_suffix(".py").exists():
                    found.add(f"{module}.{alias.name}")
    return frozenset(found)


def our_room(module: str) -> str | None:
    """``postback.store.sqlite`` -> ``store``; None for the top package and foreign modules."""
    parts = module.split(".")
    if parts[0] != "postback" or len(parts) == 1:
        return None
    return "client" if parts[1] == "client" else parts[1]


def file_of(module: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_rooms_are_the_ones_the_rules_name() -> None:
    # A new package must be placed in the rules deliberately.
    assert set(ROOMS) == set(FORBIDDEN), "add the new room to FORBIDDEN"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_respect_the_rooms(path: Path) -> None:
    if path.parent == PACKAGE and path.name != "client.py":
        return  # postback/__init__.py and __main__.py: the doors, they may point anywhere
    room = room_of(path)
    allowed = EXCEPTIONS.get(str(path.relative_to(PACKAGE)), set())
    broken = sorted(
        module for module in imports_of(path) if our_room(module) in FORBIDDEN[room] - allowed
    )
    assert not broken, f"{path.relative_to(PACKAGE)} ({room}) must not import {broken}"


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if room_of(p) in ("api", "cli") and p != PACKAGE / "cli/serve.py"],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_api_and_cli_do_not_reach_past_ingest_for_the_store(path: Path) -> None:
    # Services exposes its store for the process wiring; handlers and commands use services.
    tree = ast.parse(path.read_text(), str(path))
    lines = [
        n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "storage"
    ]
    assert not lines, f"{path.relative_to(PACKAGE)} uses .storage at lines {lines}"


def closure(start: Path) -> set[Path]:
    """The files of ours that importing ``start`` may load."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if path == PACKAGE / "__init__.py":
            continue  # imports the client lazily, on first use of postback.Client
        for module in imports_of(path):
            if module.startswith("postback"):
                parts = module.split(".")
                # Importing postback.a.b runs postback/__init__.py and postback/a/__init__.py.
                for n in range(1, len(parts) + 1):
                    target = file_of(".".join(parts[:n]))
                    if target is not None:
                        todo.append(target)
    return seen


@pytest.mark.parametrize("room", sorted(THIRD_PARTY))
def test_third_party_imports(room: str) -> None:
    if room == "core":
        files = set((PACKAGE / "core").rglob("*.py"))
    else:
        start = PACKAGE / ("client.py" if room == "client" else f"{room}/__init__.py")
        files = closure(start)
        assert all(room_of(f) in {room, "core"} or f.parent == PACKAGE for f in files), files
    foreign = {
        module.split(".")[0]
        for path in files
        for module in imports_of(path)
        if module and module.split(".")[0] not in ("postback", *sys.stdlib_module_names)
    }
    assert foreign <= THIRD_PARTY[room], f"{room} imports {sorted(foreign - THIRD_PARTY[room])}"


# -- SQL lives in postback/store/sql/ ---------------------------------------------------------

SQL = re.compile(
    r"\b(SELECT\b[\s\S]+?\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM"
    r"|WHERE\s+\w+\s*(?:=|<|>|IN\b|IS\b))",
    re.IGNORECASE,
)

# Files allowed to hold inline SQL: none (a file listed here must really have some).
SQL_ALLOWED: set[str] = set()


def sql_strings(path: Path) -> list[tuple[int, str]]:
    """String literals (docstrings excepted) that read like SQL statements."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and SQL.search(node.value)
    ]


def test_no_sql_text_outside_the_sql_files() -> None:
    found = {
        str(path.relative_to(PACKAGE)): sql_strings(path) for path in SOURCES if sql_strings(path)
    }
    unexpected = {f: hits for f, hits in found.items() if f not in SQL_ALLOWED}
    assert not unexpected, f"SQL belongs in postback/store/sql/<dialect>/queries.sql: {unexpected}"
    stale = SQL_ALLOWED - set(found)
    assert not stale, f"no inline SQL left in {sorted(stale)}: remove them from SQL_ALLOWED"


def test_the_sql_scan_sees_sql() -> None:
    # The heuristic itself: statements are found, prose is not.
    for text in (
        "SELECT id FROM deliveries",
        "insert into endpoints (id) values (?)",
        "UPDATE endpoints SET url = ?",
        "DELETE FROM attempts",
        " WHERE id = :id",
    ):
        assert SQL.search(text), text
    for text in ("select an endpoint", "the delivery was updated", "where the key is"):
        assert not SQL.search(text), text
