"""Valid built-in payloads for tests, and the custom event types test accounts register."""

from __future__ import annotations

from typing import Any

TEST_EVENT_TYPES = ("t", "u", "p", "busy", "calm", "denied")
"""Custom event types (any JSON object) registered for every test account."""
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def mo_text(body: str = "hello", **extra: Any) -> dict[str, Any]:
    return {
        "type": "mo_text",
        "id": "01XXXXX21XXXXX119Z8P1XXXXX",
        "from": "16051234567",
        "to": "13185551234",
        "body": body,
        "received_at": "2022-08-24T14:15:22Z",
        **extra,
    }


def recipient_report(status: str = "Delivered", code: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "type": "recipient_delivery_report_sms",
        "at": "2022-08-24T14:15:22.000Z",
        "batch_id": "01FC66621XXXXX119Z8PMV1QPQ",
        "code": code,
        "recipient": "46701234567",
        "status": status,
        **extra,
    }
