"""JSON Schemas (draft 2020-12) of the built-in event types.

Field for field as the seeds and the providers' references describe them: Sinch's SMS REST API
webhooks (inbound ``mo_*``, delivery reports ``delivery_report_*`` and
``recipient_delivery_report_*``) and GOV.UK Notify's callbacks ("All of the values are
strings, apart from the template version, which is a number"). Extra properties are allowed
everywhere: providers add fields, and a receiver must not break when they do.
"""

from __future__ import annotations

from typing import Any

DATE_TIME = {"type": "string", "format": "date-time"}
NULLABLE_DATE_TIME = {"type": ["string", "null"], "format": "date-time"}
STRING = {"type": "string"}
OPTIONAL_STRING = {"type": ["string", "null"]}


def _object(required: dict[str, Any], optional: dict[str, Any], title: str) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": {**required, **optional},
        "required": list(required),
        "additionalProperties": True,
    }


def _inbound(
    kind: str, body: dict[str, Any], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    return _object(
        {
            "type": {"const": kind},
            "id": STRING,
            "from": STRING,
            "to": STRING,
            "body": body,
            "received_at": DATE_TIME,
        },
        {
            "client_reference": STRING,
            "operator_id": STRING,
            "sent_at": DATE_TIME,
            **(extra or {}),
        },
        f"Sinch inbound message ({kind})",
    )


def _recipient_report(kind: str) -> dict[str, Any]:
    return _object(
        {
            "type": {"const": kind},
            "at": DATE_TIME,
            "batch_id": STRING,
            "code": {"type": "integer"},
            "recipient": STRING,
            "status": STRING,
        },
        {
            "client_reference": STRING,
            "operator_status_at": DATE_TIME,
            "applied_originator": STRING,
            "encoding": STRING,
            "number_of_message_parts": {"type": "integer", "minimum": 1},
            "operator": STRING,
        },
        f"Sinch per-recipient delivery report ({kind})",
    )


def _batch_report(kind: str) -> dict[str, Any]:
    status_count = {
        "type": "object",
        "properties": {
            "code": {"type": "integer"},
            "status": STRING,
            "count": {"type": "integer", "minimum": 0},
            "recipients": {"type": "array", "items": STRING},
        },
        "required": ["code", "status", "count"],
    }
    return _object(
        {
            "type": {"const": kind},
            "batch_id": STRING,
            "statuses": {"type": "array", "items": status_count},
            "total_message_count": {"type": "integer", "minimum": 0},
        },
        {"client_reference": STRING},
        f"Sinch batch delivery report ({kind})",
    )


BUILT_IN_SCHEMAS: dict[str, dict[str, Any]] = {
    "mo_text": _inbound("mo_text", {"type": "string", "maxLength": 2000}),
    "mo_binary": _inbound("mo_binary", STRING, {"udh": STRING}),
    "mo_media": _inbound(
        "mo_media",
        {
            "type": "object",
            "properties": {
                "subject": STRING,
                "message": STRING,
                "media": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"url": STRING, "content_type": STRING},
                        "required": ["url"],
                    },
                },
            },
        },
    ),
    "recipient_delivery_report_sms": _recipient_report("recipient_delivery_report_sms"),
    "recipient_delivery_report_mms": _recipient_report("recipient_delivery_report_mms"),
    "delivery_report_sms": _batch_report("delivery_report_sms"),
    "delivery_report_mms": _batch_report("delivery_report_mms"),
    "notify_delivery_receipt": _object(
        {
            "id": STRING,
            "reference": OPTIONAL_STRING,
            "to": STRING,
            "status": {
                "enum": [
                    "delivered",
                    "permanent-failure",
                    "temporary-failure",
                    "technical-failure",
                ]
            },
            "created_at": DATE_TIME,
            "completed_at": NULLABLE_DATE_TIME,
            "sent_at": NULLABLE_DATE_TIME,
            "notification_type": {"enum": ["email", "sms", "letter"]},
            "template_id": STRING,
            "template_version": {"type": "integer"},
        },
        {},
        "GOV.UK Notify delivery receipt",
    ),
    "notify_received_text": _object(
        {
            "id": STRING,
            "source_number": STRING,
            "destination_number": STRING,
            "message": STRING,
            "date_received": DATE_TIME,
        },
        {},
        "GOV.UK Notify received text message",
    ),
}


# -- operational events: what Postback tells the platform's operators about itself -----------
# Sent to the operational endpoints (``/v1/operational-endpoints``); every payload is
# ``{"type", "timestamp", "data"}`` like Svix's operational webhooks.

INTEGER = {"type": "integer"}
NULLABLE_INTEGER = {"type": ["integer", "null"]}


def _operational(kind: str, data: dict[str, Any], optional: dict[str, Any], title: str) -> Any:
    return _object(
        {
            "type": {"const": kind},
            "timestamp": DATE_TIME,
            "data": {
                "type": "object",
                "properties": {**data, **optional},
                "required": list(data),
                "additionalProperties": True,
            },
        },
        {},
        title,
    )


_ENDPOINT = {"account_id": STRING, "endpoint_id": STRING}

OPERATIONAL_SCHEMAS: dict[str, dict[str, Any]] = {
    "delivery.dead": _operational(
        "delivery.dead",
        {
            **_ENDPOINT,
            "delivery_id": STRING,
            "message_id": STRING,
            "event_type": STRING,
            "reason": STRING,
            "attempts": INTEGER,
        },
        {"last_status_code": NULLABLE_INTEGER},
        "A delivery was dead-lettered (retries exhausted or a permanent failure)",
    ),
    "endpoint.failing": _operational(
        "endpoint.failing",
        {**_ENDPOINT, "consecutive_failures": INTEGER, "failing_since": DATE_TIME},
        {"last_success_at": NULLABLE_DATE_TIME},
        "An endpoint failed a number of attempts in a row",
    ),
    "endpoint.recovered": _operational(
        "endpoint.recovered",
        {**_ENDPOINT},
        {"last_success_at": NULLABLE_DATE_TIME},
        "A failing endpoint answered successfully again",
    ),
    "endpoint.disabled": _operational(
        "endpoint.disabled",
        {**_ENDPOINT, "reason": STRING, "disabled_at": DATE_TIME},
        {"failing_since": NULLABLE_DATE_TIME, "consecutive_failures": INTEGER},
        "An endpoint was disabled automatically",
    ),
    "endpoint.enabled": _operational(
        "endpoint.enabled",
        {**_ENDPOINT, "enabled_at": DATE_TIME},
        {"replayed": INTEGER},
        "A disabled endpoint was enabled again",
    ),
}
BUILT_IN_SCHEMAS.update(OPERATIONAL_SCHEMAS)
