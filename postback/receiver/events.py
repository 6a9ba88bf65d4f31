"""Typed, immutable callback payloads for the built-in SMS event types.

Field for field as Sinch's SMS REST API and GOV.UK Notify document them (``shared/seeds``).
Unknown extra fields are kept in ``extra`` rather than rejected: providers add fields.
Used by ``postback.receiver.parse``; needs only msgspec (and the core's status table).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from postback.core import reports


class Event(msgspec.Struct, frozen=True, kw_only=True):
    extra: dict[str, Any] = {}
    """Fields this version of Postback does not know, kept as received."""


class Inbound(Event, frozen=True, kw_only=True):
    """The fields every Sinch inbound message (``mo_*``) has."""

    id: str
    from_: str = msgspec.field(name="from")
    to: str
    received_at: datetime
    client_reference: str | None = None
    operator_id: str | None = None
    sent_at: datetime | None = None


class InboundText(Inbound, frozen=True, kw_only=True):
    """Sinch ``mo_text``: an SMS sent to one of your numbers."""

    type: Literal["mo_text"]
    body: str


class InboundBinary(Inbound, frozen=True, kw_only=True):
    """Sinch ``mo_binary``: ``body`` is base64, ``udh`` the user data header in hex."""

    type: Literal["mo_binary"]
    body: str
    udh: str | None = None


class MediaItem(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    content_type: str | None = None
    status: str | None = None
    code: int | None = None


class MediaBody(msgspec.Struct, frozen=True, kw_only=True):
    subject: str | None = None
    message: str | None = None
    media: tuple[MediaItem, ...] = ()


class InboundMedia(Inbound, frozen=True, kw_only=True):
    """Sinch ``mo_media``: an MMS, its media as URLs."""

    type: Literal["mo_media"]
    body: MediaBody


class RecipientDeliveryReport(Event, frozen=True, kw_only=True):
    """Sinch ``recipient_delivery_report_sms`` / ``_mms``: one recipient's status change."""

    type: Literal["recipient_delivery_report_sms", "recipient_delivery_report_mms"]
    at: datetime
    batch_id: str
    code: int
    recipient: str
    status: str
    client_reference: str | None = None
    operator_status_at: datetime | None = None
    applied_originator: str | None = None
    encoding: str | None = None
    number_of_message_parts: int | None = None
    operator: str | None = None

    @property
    def is_final(self) -> bool:
        """The recipient's status will not change again (Sinch: all but Queued, Dispatched)."""
        return reports.is_final(self.status)


class StatusCount(msgspec.Struct, frozen=True, kw_only=True):
    code: int
    status: str
    count: int
    recipients: tuple[str, ...] | None = None
    """Only in ``full`` reports."""


class BatchDeliveryReport(Event, frozen=True, kw_only=True):
    """Sinch ``delivery_report_sms`` / ``_mms``: counts per status and code for a batch."""

    type: Literal["delivery_report_sms", "delivery_report_mms"]
    batch_id: str
    statuses: tuple[StatusCount, ...]
    total_message_count: int
    client_reference: str | None = None


class NotifyDeliveryReceipt(Event, frozen=True, kw_only=True):
    """GOV.UK Notify's delivery receipt. All strings except ``template_version``."""

    id: str
    reference: str | None
    to: str
    status: Literal["delivered", "permanent-failure", "temporary-failure", "technical-failure"]
    created_at: datetime
    completed_at: datetime | None
    sent_at: datetime | None
    notification_type: Literal["email", "sms", "letter"]
    template_id: str
    template_version: int


class NotifyReceivedText(Event, frozen=True, kw_only=True):
    """GOV.UK Notify's received text message."""

    id: str
    source_number: str
    destination_number: str
    message: str
    date_received: datetime


SinchEvent = (
    InboundText | InboundBinary | InboundMedia | RecipientDeliveryReport | BatchDeliveryReport
)

BUILT_IN_TYPES: dict[str, type[Event]] = {
    "mo_text": InboundText,
    "mo_binary": InboundBinary,
    "mo_media": InboundMedia,
    "recipient_delivery_report_sms": RecipientDeliveryReport,
    "recipient_delivery_report_mms": RecipientDeliveryReport,
    "delivery_report_sms": BatchDeliveryReport,
    "delivery_report_mms": BatchDeliveryReport,
    "notify_delivery_receipt": NotifyDeliveryReceipt,
    "notify_received_text": NotifyReceivedText,
}
"""Event type name -> payload type; Sinch payloads also carry the name in ``type``."""

_BODY_LIMITS = {"mo_text": 2000}
