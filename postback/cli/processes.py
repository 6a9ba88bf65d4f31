"""``postback serve --processes N``: one Python process is one core, so run N of them.

Every child is a whole ``serve`` (API, dispatcher, sweeps) listening on the same port with
``SO_REUSEPORT``: the kernel spreads connections over them, and each child's ingests take the
fast path to its own dispatcher. They share the database the way a fleet of workers does
(SQLite serialises their writes; the per-endpoint share counts every process's in-flight
deliveries), so nothing here coordinates delivery. The parent only supervises:

* before any child starts, it migrates the SQLite file and creates the key file, so children
  never race to do either, and it makes sure nothing else listens on the port: ``SO_REUSEPORT``
  would otherwise let a second ``serve --processes`` share it silently with the first;
* SIGTERM or SIGINT is passed on to every child, which finish what they hold and exit;
* a child that dies is started again after a pause; one that fails at once (a busy port, a bad
  setting) stops the whole service with its exit code, as a single ``serve`` would;
* children get SIGTERM if the parent dies, so none is left behind holding the port;
* metrics: unless the operator set ``PROMETHEUS_MULTIPROC_DIR``, a fresh one is made, so any
  child's ``/metrics`` answers for all of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from postback.cli.config import PROCESS_INDEX_ENV
from postback.cli.serve import cannot_listen

log = logging.getLogger("postback.cli.processes")

EARLY_EXIT_S = 5.0
"""A child that exits sooner than this after its start failed to start: stop, don't retry."""
RESTART_PAUSE_S = 1.0
POLL_S = 0.2
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent goes (Linux; elsewhere nothing)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def listen_address(argv: list[str]) -> tuple[str, int] | None:
    """The ``--host`` and ``--port`` of a child's command line (None without a port)."""
    options: dict[str, str] = {}
    for i, arg in enumerate(argv):
        name, equals, value = arg.partition("=")
        if name in ("--host", "--port"):
            if equals:
                options[name] = value
            elif i + 1 < len(argv):
                options[name] = argv[i + 1]
    port = options.get("--port", "")
    if not port.isdigit():
        return None
    return options.get("--host", "127.0.0.1"), int(port)


def ensure_port_free(host: str, port: int) -> None:
    """Raise the one-line error a single ``serve`` gives if anything listens on host:port.

    Bound the way the children's listeners are (``SO_REUSEADDR``, every address the host
    resolves to, IPv6 sockets IPv6-only) but without ``SO_REUSEPORT``, which would let the
    probe, and then the children, share a port another service listens on. Closed at once, so
    the children can bind. Port 0 asks the OS for any free port: nothing can be in the way.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise cannot_listen(host, port, exc) from None
    for family, kind, proto, _name, address in dict.fromkeys(infos):
        try:
            probe = socket.socket(family, kind, proto)
        except OSError:
            continue  # a family this host cannot open: the children's server skips it too
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise cannot_listen(host, port, exc) from None


@dataclass
class _Child:
    index: int
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    restarts: int = 0


@dataclass
class Supervisor:
    """Starts ``argv_for(i)`` for i in range(count), keeps them running until told to stop."""

    count: int
    argv_for: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    shutdown_timeout_s: float = 30.0
    _stopping: bool = False

    def stop(self, *_args: object) -> None:
        self._stopping = True

    def run(self) -> int:
        """Block until stopped (0) or a child failed to start (its exit code).

        Raises ConfigError, before any child starts, if the children's port is taken."""
        children = [_Child(i, self.argv_for(i)) for i in range(self.count)]
        address = listen_address(children[0].argv) if children else None
        if address is not None:
            ensure_port_free(*address)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)
        try:
            for child in children:
                self._start(child)
            return self._watch(children)
        finally:
            self._shutdown(children)

    def _start(self, child: _Child) -> None:
        env = {**self.env, PROCESS_INDEX_ENV: str(child.index)}
        child.process = subprocess.Popen(child.argv, env=env, preexec_fn=_die_with_parent)
        child.started_at = time.monotonic()
        child.restart_at = None

    def _watch(self, children: list[_Child]) -> int:
        while not self._stopping:
            now = time.monotonic()
            for child in children:
                assert child.process is not None
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        self._start(child)
                    continue
                code = child.process.poll()
                if code is None or self._stopping:
                    continue
                if now - child.started_at < EARLY_EXIT_S and child.restarts == 0:
                    log.error("process %d exited with code %d while starting", child.index, code)
                    return code or 1
                child.restarts += 1
                child.restart_at = now + RESTART_PAUSE_S
                log.error(
                    "process %d (pid %d) exited with code %d; starting it again",
                    child.index,
                    child.process.pid,
                    code,
                )
            time.sleep(POLL_S)
        return 0

    def _shutdown(self, children: list[_Child]) -> None:
        running = [c.process for c in children if c.process is not None]
        for process in running:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout_s
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("process %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()


def metrics_env(env: dict[str, str]) -> dict[str, str]:
    """The children's environment: a shared metrics directory unless one is configured."""
    if env.get("PROMETHEUS_MULTIPROC_DIR"):
        return env
    return {**env, "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="postback-metrics-")}


def child_argv(base: list[str]) -> list[str]:
    return [sys.executable, "-m", "postback", *base]
