"""The dispatcher's hot modules compiled with mypyc, used only while they match their sources.

Why: on two cores the event loop's own Python bytecode was the largest share of a delivery's
CPU, spread thin over the send path, so no single change left much to gain (docs/deployment.md,
sessions 13-18). mypyc compiles these same type-checked sources to C extension modules; nothing
is written twice, and the sources still run as they are wherever no build exists (a wheel, a
machine without a C compiler, ``POSTBACK_NATIVE=0``).

Safe by construction: ``build`` records each source's SHA-256 beside the compiled files, and
``install`` (called when ``postback`` is imported) loads them only if every source still
matches, all or none (compiled modules call each other directly, so one stale module would run
old code). An edited file therefore runs from source until the next ``make native``.

    python -m postback.native_build          # compile (mypy and a C compiler; a no-op if current)
    python -m postback.native_build status   # compiled or not, and why
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

# Modules on the path of every delivery, and pure enough for mypyc: none defines a msgspec
# Struct (msgspec reads a class's annotations, which a compiled module does not keep as
# written) nor subclasses threading.Thread (a compiled one crashed the interpreter at fork:
# the SQLite writer has a thread instead). Compiled code checks declared types at run time:
# a value typed from JSON must be decoded to that type (``msgspec.json.decode(..., type=)``).
# Not compilable as they are: api/app.py (aiohttp's @web.middleware sets an attribute on the
# function, which a compiled function refuses), and the modules with Structs.
NATIVE_MODULES = (
    "postback.api.app",
    "postback.core.breaker",
    "postback.core.fanout",
    "postback.core.ids",
    "postback.core.payloads",
    "postback.core.signing",
    "postback.core.throttle",
    "postback.core.validation",
    "postback.dispatch.health",
    "postback.dispatch.loop",
    "postback.ingest.context",
    "postback.ingest.event_types",
    "postback.ingest.messages",
    "postback.observe.metrics",
    "postback.store.sqlite",
    "postback.transports.http1",
)
GROUP = "postback_native"
"""mypyc's shared library of the group is the top-level module ``postback_native__mypyc``."""

PACKAGE_DIR = Path(__file__).resolve().parent
BUILD_DIR = PACKAGE_DIR / ".native"
MANIFEST = "manifest.json"

_active: tuple[str, ...] = ()
_reason = "not looked for yet"


def source_of(module: str, package_dir: Path = PACKAGE_DIR) -> Path:
    return package_dir.parent / (module.replace(".", "/") + ".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plan(
    build_dir: Path = BUILD_DIR,
    package_dir: Path = PACKAGE_DIR,
    modules: Sequence[str] = NATIVE_MODULES,
) -> tuple[dict[str, Path] | None, str]:
    """The compiled file of each module (the group's library included), or None and why not."""
    if os.environ.get("POSTBACK_NATIVE", "1").strip() == "0":
        return None, "POSTBACK_NATIVE=0"
    try:
        manifest = json.loads((build_dir / MANIFEST).read_bytes())
    except FileNotFoundError:
        return None, "not built (make native)"
    except (OSError, ValueError) as exc:
        return None, f"unreadable build manifest: {exc}"
    if not isinstance(manifest, dict) or manifest.get("hexversion") != sys.hexversion:
        return None, "built for another Python"
    built = manifest.get("modules")
    if not isinstance(built, dict) or sorted(built) != sorted(modules):
        return None, "built from another list of modules"
    files: dict[str, Path] = {}
    for module in modules:
        entry = built[module]
        try:
            current = digest(source_of(module, package_dir))
        except OSError:
            return None, f"{module}: its source is missing"
        if current != entry.get("sha256"):
            return None, f"{module} changed since the build (make native)"
        files[module] = build_dir / str(entry["file"])
    group = manifest.get("group")
    if not isinstance(group, dict):
        return None, "unreadable build manifest: no group"
    files[str(group["name"])] = build_dir / str(group["file"])
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        return None, f"compiled file missing: {missing[0]}"
    return files, "compiled"


class _NativeFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules first; everything else falls through to the usual finders."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def install() -> None:
    """Use the compiled modules if they match their sources; called by ``postback``'s import."""
    global _active, _reason
    if _active or any(isinstance(f, _NativeFinder) for f in sys.meta_path):
        return
    files, _reason = plan()
    if files is None:
        return
    already = [m for m in NATIVE_MODULES if m in sys.modules]
    if already:  # imported from source before us: mixing would run two copies
        _reason = f"{already[0]} was imported from source first"
        return
    sys.meta_path.insert(0, _NativeFinder(files))
    _active = NATIVE_MODULES


def status() -> str:
    """One line for the logs: which modules run compiled, or why none does."""
    if _active:
        return f"{len(_active)} hot modules compiled with mypyc"
    return f"running from source ({_reason})"
