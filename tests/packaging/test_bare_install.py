"""``pip install postback`` is the client and the receiver SDK, without the service's stack.

A wheel is built from this tree, installed with its declared dependencies into a fresh venv,
and the public pieces are imported there: what the server alone needs must be absent.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVER_ONLY = ("asyncpg", "cryptography", "jsonschema", "swagger_ui_bundle", "uvloop")

CHECK = f"""
import importlib.util, sys
import postback, postback.receiver
from postback import Client, SyncClient, APIError
from postback.receiver import parse, verify
assert postback.Client is Client
installed = [n for n in {SERVER_ONLY!r} if importlib.util.find_spec(n) is not None]
assert not installed, f"server-only packages installed: {{installed}}"
loaded = sorted(m for m in sys.modules if m.startswith(("aiohttp.web", "asyncpg", "postback.api",
    "postback.store", "postback.ingest", "postback.dispatch", "postback.transports")))
assert not loaded, f"server modules imported: {{loaded}}"
print("ok")
"""


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_bare_install_has_the_client_and_the_receiver_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "postback",
        src / "postback",
        ignore=shutil.ignore_patterns("__pycache__", ".native*"),
    )
    # PEP 517 hook called directly: no isolated build environment to download.
    build = "from setuptools import build_meta; print(build_meta.build_wheel(%r))"
    wheel = run(sys.executable, "-c", build % str(tmp_path), cwd=src).stdout.split()[-1]

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        tmp_path / wheel,
        cwd=tmp_path,
    )

    assert run(python, "-I", "-c", CHECK, cwd=tmp_path).stdout.strip() == "ok"

    # The command line is installed too; the service commands name the missing extra.
    serve = subprocess.run(
        [venv / "bin" / "postback", "serve"], cwd=tmp_path, capture_output=True, text=True
    )
    assert serve.returncode == 1
    assert serve.stderr.count("\n") == 1 and "postback[server]" in serve.stderr, serve.stderr
    assert "Traceback" not in serve.stderr
    # The receiver's tools and the API commands work without the extra.
    for args, expected in (
        (["listen"], "needs the endpoint's signing secret"),
        (["health", "--url", "http://127.0.0.1:9"], "cannot reach Postback"),
    ):
        bare = subprocess.run(
            [venv / "bin" / "postback", *args], cwd=tmp_path, capture_output=True, text=True
        )
        assert bare.returncode == 1 and expected in bare.stderr, bare.stderr
        assert "postback[server]" not in bare.stderr and "Traceback" not in bare.stderr
