"""The compiled hot modules run only while they match their sources, all or none.

``make test`` builds them first (``make native``), so under CI the suite itself runs on the
compiled modules, and the check below fails if they were not used.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from postback import native

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("pkg.hot", "pkg.sub.hotter")


def fake_build(tmp_path: Path) -> tuple[Path, Path]:
    """A package with two modules and a build of them (empty files stand for the compiled)."""
    package = tmp_path / "src" / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "hot.py").write_text("X = 1\n")
    (package / "sub" / "hotter.py").write_text("Y = 2\n")
    build = tmp_path / "build"
    modules = {}
    for module in MODULES:
        file = module.replace(".", "/") + ".so"
        (build / file).parent.mkdir(parents=True, exist_ok=True)
        (build / file).write_bytes(b"")
        source = native.source_of(module, package)
        modules[module] = {"file": file, "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    (build / "group.so").write_bytes(b"")
    manifest = {
        "hexversion": sys.hexversion,
        "group": {"name": "group__mypyc", "file": "group.so"},
        "modules": modules,
    }
    (build / native.MANIFEST).write_text(json.dumps(manifest))
    return build, package


def test_a_current_build_maps_every_module_and_the_group_library(tmp_path: Path) -> None:
    build, package = fake_build(tmp_path)
    files, why = native.plan(build, package, MODULES)
    assert why == "compiled"
    assert files == {
        "pkg.hot": build / "pkg/hot.so",
        "pkg.sub.hotter": build / "pkg/sub/hotter.so",
        "group__mypyc": build / "group.so",
    }


def test_one_edited_source_sends_every_module_back_to_source(tmp_path: Path) -> None:
    build, package = fake_build(tmp_path)
    (package / "sub" / "hotter.py").write_text("Y = 3\n")
    files, why = native.plan(build, package, MODULES)
    assert files is None
    assert why == "pkg.sub.hotter changed since the build (make native)"


def test_a_build_for_another_python_or_list_or_with_a_file_missing_is_not_used(
    tmp_path: Path,
) -> None:
    build, package = fake_build(tmp_path)
    assert native.plan(build, package, (*MODULES, "pkg.new"))[0] is None
    (build / "group.so").unlink()
    assert native.plan(build, package, MODULES) == (
        None,
        f"compiled file missing: {build / 'group.so'}",
    )
    manifest = json.loads((build / native.MANIFEST).read_text())
    manifest["hexversion"] = sys.hexversion + 1
    (build / native.MANIFEST).write_text(json.dumps(manifest))
    assert native.plan(build, package, MODULES) == (None, "built for another Python")
    (build / native.MANIFEST).write_text("{not json")
    assert native.plan(build, package, MODULES)[1].startswith("unreadable build manifest")
    (build / native.MANIFEST).unlink()
    assert native.plan(build, package, MODULES) == (None, "not built (make native)")


def test_postback_native_0_runs_the_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build, package = fake_build(tmp_path)
    monkeypatch.setenv("POSTBACK_NATIVE", "0")
    assert native.plan(build, package, MODULES) == (None, "POSTBACK_NATIVE=0")


PROBE = """
import postback, postback.native
import postback.dispatch.loop, postback.transports.http1
print(postback.dispatch.loop.__file__)
print(postback.transports.http1.__file__)
print(postback.native.status())
"""


def probe(**env: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_this_checkout_runs_its_hot_modules_compiled() -> None:
    files, why = native.plan()
    if files is None and os.environ.get("CI") != "true":
        pytest.skip(f"not compiled here: {why}")
    assert files is not None, f"make test compiles them first, yet: {why}"
    loop, http1, status = probe()
    assert loop.endswith(".so") and "/.native/" in loop
    assert http1.endswith(".so")
    assert status == f"{len(native.NATIVE_MODULES)} hot modules compiled with mypyc"
    loop, http1, status = probe(POSTBACK_NATIVE="0")
    assert loop.endswith("postback/dispatch/loop.py")
    assert status == "running from source (POSTBACK_NATIVE=0)"


def test_the_compiled_modules_keep_the_rules_compiling_needs() -> None:
    """What went wrong once compiled (docs/ARCHITECTURE.md): an ``await`` inside an ``except``
    handler raised the handled exception again later, and a ``threading.Thread`` subclass
    crashed the interpreter at fork. Neither may come back into a compiled module; nor an
    ``await`` inside ``contextlib.suppress`` (an exception swallowed by a context manager
    after an await is mypyc's issue #1177: fixed in the mypy we pin, avoided all the same);
    nor one name bound by ``except ... as`` clauses of different types in one function:
    compiled, the name keeps the first clause's type, and the API's error middleware answered
    a 400 with a 500 ("ApiError object expected; got InvalidInput")."""
    import ast

    found = []
    for module in native.NATIVE_MODULES:
        tree = ast.parse(native.source_of(module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler):
                awaits = [n for n in ast.walk(node) if isinstance(n, ast.Await)]
                found += [f"{module}:{n.lineno}: await in an except handler" for n in awaits]
            if isinstance(node, ast.With) and "suppress" in ast.unparse(node.items[0]):
                awaits = [n for st in node.body for n in ast.walk(st) if isinstance(n, ast.Await)]
                found += [f"{module}:{n.lineno}: await inside a suppress()" for n in awaits]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                types: dict[str, set[str]] = {}
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ExceptHandler) and inner.name and inner.type:
                        types.setdefault(inner.name, set()).add(ast.unparse(inner.type))
                found += [
                    f"{module}:{node.lineno}: {node.name} binds {name!r} to {sorted(kinds)}"
                    for name, kinds in types.items()
                    if len(kinds) > 1
                ]
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                if any(base.endswith("Thread") for base in bases):
                    found.append(f"{module}:{node.lineno}: {node.name} subclasses a Thread")
    assert found == []
