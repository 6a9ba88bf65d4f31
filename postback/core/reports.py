"""Delivery-report modes: which callbacks a batch's recipient status updates produce.

The seeds (Sinch): "If you set per_recipient for the delivery_report parameter when sending the
batch, a recipient report gets sent to you for each status change for each recipient in your
batch. If you set per_recipient_final, a recipient report gets sent to you for the final status
of each recipient in your batch." ``summary`` and ``full`` are batch reports ("either a full
report or summary report"): counts per status and code, with the recipients listed in ``full``.
We send the batch report once, when every recipient has a final status or when the batch's
report deadline passes, whichever comes first. ``none`` sends nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

import msgspec

ReportMode = Literal["none", "summary", "full", "per_recipient", "per_recipient_final"]
MessageKind = Literal["sms", "mms"]

# Sinch's delivery statuses: Queued and Dispatched are on the way; every other one is final.
# The one table of them: the report modes here and the receiver SDK's ``is_final`` use it.
IN_PROGRESS_STATUSES = frozenset({"Queued", "Dispatched"})
FINAL_STATUSES = frozenset(
    {"Aborted", "Cancelled", "Delivered", "Expired", "Failed", "Rejected", "Deleted", "Unknown"}
)
KNOWN_STATUSES = IN_PROGRESS_STATUSES | FINAL_STATUSES


def is_final(status: str) -> bool:
    """A recipient's status that will not change again."""
    return status in FINAL_STATUSES


class RecipientUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One status change of one recipient, as the platform's SMSC reported it."""

    recipient: str
    status: str
    code: int
    at: str
    """When the status changed (RFC 3339)."""
    operator_status_at: str | None = None
    applied_originator: str | None = None
    encoding: str | None = None
    number_of_message_parts: int | None = None
    operator: str | None = None


class BatchInfo(msgspec.Struct, frozen=True, kw_only=True):
    batch_id: str
    mode: ReportMode
    kind: MessageKind = "sms"
    client_reference: str | None = None


def sends_recipient_report(mode: ReportMode, status: str) -> bool:
    if mode == "per_recipient":
        return True
    return mode == "per_recipient_final" and is_final(status)


def wants_batch_report(mode: ReportMode) -> bool:
    return mode in ("summary", "full")


def recipient_report(batch: BatchInfo, update: RecipientUpdate) -> dict[str, Any]:
    """A ``recipient_delivery_report_sms|mms`` payload (Sinch's field names)."""
    payload: dict[str, Any] = {
        "type": f"recipient_delivery_report_{batch.kind}",
        "batch_id": batch.batch_id,
        "recipient": update.recipient,
        "status": update.status,
        "code": update.code,
        "at": update.at,
    }
    if batch.client_reference is not None:
        payload["client_reference"] = batch.client_reference
    for name in (
        "operator_status_at",
        "applied_originator",
        "encoding",
        "number_of_message_parts",
        "operator",
    ):
        value = getattr(update, name)
        if value is not None:
            payload[name] = value
    return payload


def batch_report(
    batch: BatchInfo, statuses: dict[str, tuple[str, int]], total_message_count: int
) -> dict[str, Any]:
    """A ``delivery_report_sms|mms`` payload: one entry per (status, code) with its count;
    ``full`` reports list the recipients of each entry. ``statuses``: recipient -> latest
    (status, code)."""
    groups: dict[tuple[str, int], list[str]] = defaultdict(list)
    for recipient, (status, code) in sorted(statuses.items()):
        groups[(status, code)].append(recipient)
    entries = []
    for (status, code), recipients in sorted(groups.items()):
        entry: dict[str, Any] = {"code": code, "status": status, "count": len(recipients)}
        if batch.mode == "full":
            entry["recipients"] = recipients
        entries.append(entry)
    payload: dict[str, Any] = {
        "type": f"delivery_report_{batch.kind}",
        "batch_id": batch.batch_id,
        "statuses": entries,
        "total_message_count": total_message_count,
    }
    if batch.client_reference is not None:
        payload["client_reference"] = batch.client_reference
    return payload
