"""Sinch batches and their delivery-report modes: recipient reports in order, batch reports
when every recipient is final or at the deadline (the rules are in ``postback.core.reports``)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from postback.core.errors import Conflict, InvalidInput
from postback.core.model import BatchRecord, IngestResult, MessageSubmission, RecipientStatus
from postback.core.reports import (
    KNOWN_STATUSES,
    BatchInfo,
    MessageKind,
    RecipientUpdate,
    ReportMode,
    batch_report,
    is_final,
    recipient_report,
    sends_recipient_report,
    wants_batch_report,
)
from postback.core.validation import check_batch_id, check_url
from postback.ingest.context import IngestContext
from postback.ingest.messages import MessageService


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchProgress:
    """What one recipient-status call produced."""

    batch: BatchRecord
    messages: list[IngestResult]
    final_recipients: int
    known_recipients: int
    batch_report_sent: bool


class BatchReports:
    def __init__(self, context: IngestContext, messages: MessageService) -> None:
        self.context = context
        self.messages = messages

    async def batch_recipient_status(
        self,
        account_id: str,
        batch_id: str,
        *,
        mode: ReportMode,
        kind: MessageKind = "sms",
        recipients: list[str] | None = None,
        updates: list[RecipientUpdate] | None = None,
        callback_url: str | None = None,
        client_reference: str | None = None,
        report_deadline_s: int = 86_400,
    ) -> BatchProgress:
        """Record recipient status changes of a batch and send the callbacks its mode asks
        for (see ``postback.core.reports``)."""
        check_batch_id(batch_id)
        recipients = recipients or []
        updates = updates or []
        if len(recipients) > 100_000 or len(updates) > 10_000:
            raise InvalidInput("statuses", "at most 100,000 recipients and 10,000 updates a call")
        for i, update in enumerate(updates):
            if update.status not in KNOWN_STATUSES:
                names = ", ".join(sorted(KNOWN_STATUSES))
                raise InvalidInput(f"statuses[{i}].status", f"status must be one of {names}")
        if callback_url is not None:
            check_url(callback_url, "callback_url")
        if not 1 <= report_deadline_s <= 7 * 86_400:
            raise InvalidInput("report_deadline_s", "report_deadline_s must be 1 s to 7 days")
        existing = await self.context.storage.batch_statuses(account_id, batch_id)
        if existing is not None and existing[0].mode != mode:
            raise Conflict(f"batch {batch_id} was created with delivery_report {existing[0].mode}")
        now = self.context.now_ms()
        requested = BatchRecord(
            batch_id=batch_id,
            mode=mode,
            kind=kind,
            client_reference=client_reference,
            callback_url=callback_url,
            expected_recipients=len(set(recipients)),
            report_deadline=now + report_deadline_s * 1000,
            report_state="waiting" if wants_batch_report(mode) else "none",
            created_at=now,
        )
        batch, statuses = await self.context.storage.update_batch(
            account_id,
            requested,
            recipients,
            [RecipientStatus(recipient=u.recipient, status=u.status, code=u.code) for u in updates],
        )
        info = BatchInfo(
            batch_id=batch_id,
            mode=batch.mode,  # type: ignore[arg-type]
            kind=batch.kind,  # type: ignore[arg-type]
            client_reference=batch.client_reference,
        )
        submissions = [
            MessageSubmission(
                event_type=f"recipient_delivery_report_{info.kind}",
                payload=msgspec.json.encode(recipient_report(info, update)),
                callback_url=batch.callback_url,
                # One recipient's reports reach each endpoint in order (Dispatched first).
                ordering_key=f"{batch_id}/{update.recipient}",
            )
            for update in updates
            if sends_recipient_report(info.mode, update.status)
        ]
        final = sum(1 for status, _ in statuses.values() if status is not None and is_final(status))
        complete = final == len(statuses) and final >= batch.expected_recipients and final > 0
        report = complete and batch.report_state == "waiting"
        if report:
            submissions.append(self._batch_report_submission(info, batch, statuses))
        results = await self.messages.submit(account_id, submissions) if submissions else []
        sent = report and await self.context.storage.mark_batch_reported(account_id, batch_id)
        return BatchProgress(
            batch=batch,
            messages=results,
            final_recipients=final,
            known_recipients=len(statuses),
            batch_report_sent=sent,
        )

    @staticmethod
    def _batch_report_submission(
        info: BatchInfo, batch: BatchRecord, statuses: dict[str, tuple[str | None, int | None]]
    ) -> MessageSubmission:
        reported = {
            recipient: (status or "Queued", code if code is not None else 0)
            for recipient, (status, code) in statuses.items()
        }
        payload = batch_report(info, reported, max(len(reported), batch.expected_recipients))
        return MessageSubmission(
            event_type=f"delivery_report_{info.kind}",
            payload=msgspec.json.encode(payload),
            callback_url=batch.callback_url,
            # The deadline sweeper and a final update may race: one report, not two.
            idempotency_key=f"batch-report/{batch.batch_id}",
            refuse_reuse=False,  # the racing reports may differ; the first one stands
        )

    async def send_due(self, limit: int = 100) -> int:
        """Batch reports whose deadline passed before every recipient was final."""
        sent = 0
        for account_id, batch_id in await self.context.storage.due_batch_reports(
            self.context.now_ms(), limit
        ):
            found = await self.context.storage.batch_statuses(account_id, batch_id)
            if found is None:
                continue
            batch, statuses = found
            info = BatchInfo(
                batch_id=batch_id,
                mode=batch.mode,  # type: ignore[arg-type]
                kind=batch.kind,  # type: ignore[arg-type]
                client_reference=batch.client_reference,
            )
            await self.messages.submit(
                account_id, [self._batch_report_submission(info, batch, statuses)]
            )
            if await self.context.storage.mark_batch_reported(account_id, batch_id):
                sent += 1
        return sent
