"""Log lines: a dead delivery's reason is read once in text, and kept as a field in JSON."""

from __future__ import annotations

import json
import logging

from postback.observe.logs import JsonFormatter, TextFormatter


def _alert() -> logging.LogRecord:
    record = logging.LogRecord(
        "postback.alerts", logging.ERROR, __file__, 1, "delivery dead: %s", ("HTTP 404",), None
    )
    record.__dict__.update(
        {"event": "delivery_dead", "delivery_id": "dlv_1", "reason": "HTTP 404", "status_code": 404}
    )
    return record


def test_text_line_states_the_reason_once() -> None:
    line = TextFormatter("%(levelname)s %(name)s: %(message)s").format(_alert())
    assert line.count("HTTP 404") == 1
    assert "delivery_id=dlv_1" in line and "status_code=404" in line


def test_json_line_keeps_every_field() -> None:
    data = json.loads(JsonFormatter().format(_alert()))
    assert data["reason"] == "HTTP 404" and data["message"] == "delivery dead: HTTP 404"
