"""Logging setup: readable text for a terminal, one JSON object per line for machines.

Extra fields passed with ``extra={...}`` (account_id, endpoint_id, reason, ...) are kept as
structured fields. Nothing secret is ever put in a log record: the dispatcher logs ids and
reasons, never headers, credentials or payloads.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {
            k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
        }
        message = record.getMessage()
        # A field already spelled out in the message (a dead delivery's reason) is not
        # repeated after it: a reader sees each fact once. JSON keeps every field.
        shown = [
            f"{k}={v}"
            for k, v in extras.items()
            if k != "event" and v is not None and not (isinstance(v, str) and v and v in message)
        ]
        if shown:
            base += " " + " ".join(shown)
        return base


def configure_logging(log_format: str = "text", level: int | str = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class RecurringCondition:
    """A condition that may fail many operations a second (a full disk): logged once when it
    starts, then at most one summary per ``interval_s`` while it lasts, and once when it clears.

    A full disk is usually shared with the log: one line per refused request would make it
    worse, and a traceback per failure tells nothing new.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self.active = False
        self._since_report = 0
        self._total = 0
        self._reported_at = 0.0

    def occurred(self, detail: str) -> None:
        """One more operation failed because of the condition."""
        with self._lock:
            now = self._clock()
            self._total += 1
            if not self.active:
                self.active = True
                self._reported_at, self._since_report = now, 0
                self._log.error("%s: %s (refusing writes until it clears)", self._what, detail)
                return
            self._since_report += 1
            if now - self._reported_at >= self._interval_s:
                self._log.error(
                    "%s: still so; %d operations refused in the last %.0f s",
                    self._what,
                    self._since_report,
                    now - self._reported_at,
                )
                self._reported_at, self._since_report = now, 0

    def cleared(self) -> None:
        """An operation that the condition would have failed succeeded."""
        if not self.active:
            return
        with self._lock:
            if self.active:
                self.active = False
                self._log.warning(
                    "%s: cleared after %d refused operations", self._what, self._total
                )
                self._total = 0


STORAGE_FULL = RecurringCondition(logging.getLogger("postback.storage"), "storage is full")
"""The one record of a full disk, shared by the API and the dispatcher."""
