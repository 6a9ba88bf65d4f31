"""Postback processes (`postback worker`, `postback serve`) started as real subprocesses."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from postback.core.netguard import parse_networks
from postback.store.sealing import Sealer


@dataclass
class PostbackProcess:
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    def start(self) -> PostbackProcess:
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postback", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to finish or release anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM and wait: the graceful path. Returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


TEST_SECRET_KEY = base64.b64encode(b"postback-tests-sealing-key-32by!").decode()
"""One sealing key for the test process and the Postbacks it starts, so both read the secrets."""
TEST_SEALER = Sealer.from_base64(TEST_SECRET_KEY)
LOOPBACK = "127.0.0.0/8,::1/128"
"""What tests open in the SSRF guard: their receivers listen on loopback."""
TEST_ALLOWED = parse_networks(LOOPBACK)


def postback_env(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["POSTBACK_DATABASE_URL"] = database_url
    env["POSTBACK_SECRET_KEY"] = TEST_SECRET_KEY
    env["POSTBACK_ALLOW_NETWORKS"] = LOOPBACK
    # One process unless a test asks for more: a SIGKILL must crash the whole service, not a
    # supervisor whose children then shut down cleanly (test_serve_processes covers several).
    env["POSTBACK_PROCESSES"] = "1"
    env.update(extra)
    return env


def worker(database_url: str, log_path: Path, **extra: str) -> PostbackProcess:
    return PostbackProcess(["worker"], postback_env(database_url, **extra), log_path)
