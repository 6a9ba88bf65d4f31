"""Compiles the modules ``postback.native`` lists with mypyc (``make native``).

A separate module so that building needs nothing at import time of ``postback`` itself, and
so ``python -m`` does not run a second copy of ``postback.native``.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from postback import native


def build(build_dir: Path = native.BUILD_DIR) -> bool:
    """Compile native.NATIVE_MODULES into ``build_dir`` unless a current build is there already.

    False (and a message on stderr, no traceback) where it cannot: Postback then runs its
    sources, correct and slower."""
    import shutil
    import tempfile

    files, why = native.plan(build_dir)
    if files is not None:
        print(
            f"postback.native: up to date ({len(native.NATIVE_MODULES)} modules)", file=sys.stderr
        )
        return True
    try:
        from mypyc.build import mypycify
        from setuptools import setup  # type: ignore[import-untyped]
    except ImportError as exc:
        print(f"postback.native: cannot compile ({exc}); running from source", file=sys.stderr)
        return False
    root = native.PACKAGE_DIR.parent
    digests = {module: native.digest(native.source_of(module)) for module in native.NATIVE_MODULES}
    work = Path(tempfile.mkdtemp(prefix="postback-native-"))
    here = Path.cwd()
    print("postback.native: compiling (about a minute) ...", file=sys.stderr, flush=True)
    # The compiler's lines go to a log, shown only if compiling fails: fd level, as gcc
    # writes to the file descriptors it inherits.
    log_path = work / "build.log"
    saved = [os.dup(1), os.dup(2)]
    with log_path.open("wb") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
    try:
        os.chdir(root)  # mypyc names modules by their paths from here
        extensions = mypycify(
            [str(native.source_of(m).relative_to(root)) for m in native.NATIVE_MODULES],
            opt_level="3",
            multi_file=True,  # one C file per module, compiled in parallel (_parallel_build_ext)
            target_dir=str(work / "c"),
            group_name=native.GROUP,
        )
        setup(
            name="postback-native",
            ext_modules=extensions,
            cmdclass={"build_ext": _parallel_build_ext()},
            script_name="setup.py",
            script_args=[
                "--quiet",
                "build_ext",
                "--build-lib",
                str(work / "lib"),
                "--build-temp",
                str(work / "obj"),
            ],
        )
    except (Exception, SystemExit) as exc:  # a compiler error is SystemExit from setuptools
        _restore(saved)
        print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
        print(f"postback.native: compiling failed ({exc}); running from source", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return False
    finally:
        _restore(saved)
        os.chdir(here)
    lib = work / "lib"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    group_file = f"{native.GROUP}__mypyc{suffix}"
    manifest = {
        "hexversion": sys.hexversion,
        "group": {"name": f"{native.GROUP}__mypyc", "file": group_file},
        "modules": {
            module: {"file": module.replace(".", "/") + suffix, "sha256": digests[module]}
            for module in native.NATIVE_MODULES
        },
    }
    # The manifest last: a build dir without it is never used, so a crash here leaves none.
    (lib / native.MANIFEST).write_text(json.dumps(manifest, indent=1))
    old = build_dir.with_name(build_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if build_dir.exists():
        build_dir.rename(old)  # a running process keeps its mapped files
    shutil.move(str(lib), str(build_dir))
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    print(
        f"postback.native: compiled {len(native.NATIVE_MODULES)} modules into {build_dir}"
        f" (was: {why})",
        file=sys.stderr,
    )
    return True


def _parallel_build_ext() -> type:
    """setuptools' ``build_ext``, compiling an extension's C files on every core at once.

    Why: the group's library is one extension of ~35 C files, which setuptools compiles one
    after the other (its ``--parallel`` runs whole extensions side by side): ~100 s of gcc on
    one core. Uses the compiler's own steps (``_setup_compile``, ``_get_cc_args``,
    ``_compile``: setuptools is pinned); where they are missing it compiles as setuptools
    does."""
    from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]

    class ParallelBuildExt(build_ext):  # type: ignore[misc]
        def build_extension(self, ext: Any) -> None:
            compiler = self.compiler
            steps = ("_setup_compile", "_get_cc_args", "_compile")
            if all(hasattr(compiler, step) for step in steps):
                compiler.compile = _parallel_compile(compiler)
            super().build_extension(ext)

    return ParallelBuildExt


def _parallel_compile(compiler: Any) -> Any:
    def compile_sources(
        sources: list[str],
        output_dir: str | None = None,
        macros: Any = None,
        include_dirs: Any = None,
        debug: bool = False,
        extra_preargs: list[str] | None = None,
        extra_postargs: list[str] | None = None,
        depends: list[str] | None = None,
    ) -> list[str]:
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs
        )
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

        def compile_one(obj: str) -> None:
            src, ext = build[obj]
            compiler._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(compile_one, [obj for obj in objects if obj in build]))
        return list(objects)

    return compile_sources


def _restore(saved: list[int]) -> None:
    """Put standard output and error (1 and 2) back from their copies in ``saved``, once."""
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, copy in enumerate(saved, start=1):
        os.dup2(copy, fd)
        os.close(copy)
    saved.clear()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in ([], ["build"]):
        build()
        return 0  # never fails a make: the sources run wherever compiling cannot
    if args == ["status"]:
        print(native.status())
        return 0
    print("usage: python -m postback.native_build [status]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
