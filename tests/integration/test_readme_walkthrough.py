"""The README's "Keep it running" walkthrough, run as written on a fresh database.

The shell blocks of that section are joined and run by bash from the repository root, as a
reader would paste them. Two things differ, both named here: `make demo` is skipped (this test
already runs inside the installed .venv, and the demo has its own run), and ports 8000/9000
become free ones (other Postbacks may be running on this machine).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

from tests.support.service import free_port

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Keep it running"


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else None]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M)
    assert len(blocks) >= 3, "the walkthrough is a sequence of ```sh blocks"
    return "\n".join(blocks)


def test_the_readme_starts_with_make_demo_and_make_test() -> None:
    first = re.search(r"^```sh\n(.*?)^```$", (ROOT / "README.md").read_text(), re.S | re.M)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


def test_keep_it_running_works_by_copy_paste(tmp_path: Path) -> None:
    script = walkthrough()
    assert script.splitlines()[0].startswith("make demo")
    script = script.replace("make demo", ":", 1)
    api_port, listen_port = free_port(), free_port()
    script = script.replace("8000", str(api_port)).replace("9000", str(listen_port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBACK_")}
    env["TMPDIR"] = str(tmp_path)  # where `mktemp -d` makes the fresh directory
    process = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        # Whatever the script left running (it stops serve and listen itself when it passes).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    [database] = list(tmp_path.glob("tmp.*/postback.db"))
    assert f"database: SQLite file {database}" in output
    # `postback listen` verified and printed the callback; Postback recorded the delivery.
    assert re.search(r"mo_text\s+verified \(standard-webhooks\)\s+-> 200", output), output
    assert '"body": "This is a test message."' in output
    assert re.search(r"^deliveries:\n.*\n.*\bdelivered\b", output, re.M), output
    assert re.search(r"^1\s+\S+\s+\d+ ms\s+delivered\s+200", output, re.M), output
    assert f"http://127.0.0.1:{listen_port}/callbacks" in output
