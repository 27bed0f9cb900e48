"""Sending due touch points, at most once each, whatever the number of workers.

A touch point moves ``scheduled → claimed → sending → sent | recorded | blocked
| failed | needs_review``, or to ``cancelled``:

1. *claim*: due rows are taken with ``SELECT … FOR UPDATE SKIP LOCKED`` and
   marked ``claimed`` with a lease, in one short transaction. Two workers never
   claim the same row; a row whose lease ran out (its worker died before
   sending anything) may be claimed again.
2. *check*: a closed lead or a stopped cadence cancels the row; a recipient in
   quiet hours moves it to the next allowed minute.
3. *sending*: the rows about to be sent are committed as ``sending`` before
   any provider is called (the gate then commits its own OutboundMessage as
   ``sending`` before calling the backend).
4. *outcome*: each row takes its message's outcome. A provider answer that
   leaves it unclear whether the message went out makes the row
   ``needs_review``, and so does a row found still ``sending`` after a crash
   whose message may have reached the provider (see
   ``touchpoints_recover_stuck``). Neither is ever sent again by itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from chat import services as chat_services
from messaging import services as messaging
from messaging.models import BlockReason, MessageKind, MessageStatus, OutboundMessage
from touchpoints import services
from touchpoints.models import EnrollmentStatus, TouchPoint, TouchPointStatus

logger = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=5)
# A row still "sending" this long after it was marked belongs to a worker that died mid-send.
SENDING_TIMEOUT = timedelta(minutes=10)

OUTCOME = {
    MessageStatus.SENT: TouchPointStatus.SENT,
    MessageStatus.RECORDED: TouchPointStatus.RECORDED,
    MessageStatus.FAILED: TouchPointStatus.FAILED,
    MessageStatus.UNKNOWN: TouchPointStatus.NEEDS_REVIEW,
    MessageStatus.BLOCKED: TouchPointStatus.BLOCKED,
}
# Blocks that pass with time: the row is moved, not closed.
DEFERRABLE = {BlockReason.QUIET_HOURS, BlockReason.DAILY_CAP}


@dataclass
class ProcessStats:
    claimed: int = 0
    sent: int = 0
    blocked: int = 0
    failed: int = 0
    needs_review: int = 0
    deferred: int = 0
    cancelled: int = 0
    batches: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if status in (TouchPointStatus.SENT, TouchPointStatus.RECORDED):
            self.sent += 1
        elif status == TouchPointStatus.BLOCKED:
            self.blocked += 1
        elif status == TouchPointStatus.FAILED:
            self.failed += 1
        elif status == TouchPointStatus.NEEDS_REVIEW:
            self.needs_review += 1


def _due(now: datetime, lead_id: int | None) -> QuerySet[TouchPoint]:
    rows = TouchPoint.objects.filter(due_at__lte=now).filter(
        Q(status=TouchPointStatus.SCHEDULED)
        | Q(status=TouchPointStatus.CLAIMED, claimed_until__lt=now)
    )
    return rows.filter(lead_id=lead_id) if lead_id is not None else rows


def touchpoints_claim(
    *, limit: int, now: datetime | None = None, lead_id: int | None = None
) -> list[int]:
    """Claim up to ``limit`` due rows for this worker; returns their ids (oldest due first)."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            _due(now, lead_id)
            .order_by("due_at", "pk")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            TouchPoint.objects.filter(pk__in=ids).update(
                status=TouchPointStatus.CLAIMED, claimed_until=now + CLAIM_LEASE
            )
    return ids


def touchpoints_process_due(
    *,
    batch_size: int | None = None,
    max_seconds: float = 50.0,
    lead_id: int | None = None,
    now: datetime | None = None,
) -> ProcessStats:
    """Claim and send due touch points batch by batch until none is due or ``max_seconds`` pass."""
    batch_size = batch_size or settings.TOUCHPOINT_BATCH_SIZE
    stats = ProcessStats()
    started = time.monotonic()
    templates: dict[int, tuple] = {}
    while time.monotonic() - started < max_seconds:
        ids = touchpoints_claim(limit=batch_size, now=now, lead_id=lead_id)
        if not ids:
            break
        stats.batches += 1
        stats.claimed += len(ids)
        touchpoints_send_claimed(ids=ids, stats=stats, templates=templates, now=now)
    return stats


def touchpoints_send_claimed(
    *,
    ids: list[int],
    stats: ProcessStats,
    templates: dict[int, tuple],
    now: datetime | None = None,
) -> None:
    """Check, mark sending, send and record a batch of claimed rows (see the module doc)."""
    now = now or timezone.now()
    rows = list(
        TouchPoint.objects.filter(pk__in=ids, status=TouchPointStatus.CLAIMED)
        .select_related("lead__location", "lead__cadence_enrollment", "step")
        .order_by("due_at", "pk")
    )
    context = messaging.batch_context()
    brand = context.brand_name
    ready: list[TouchPoint] = []
    for touchpoint in rows:
        lead = touchpoint.lead
        enrollment = getattr(lead, "cadence_enrollment", None)
        if (
            not lead.is_open
            or enrollment is None
            or enrollment.status != EnrollmentStatus.ACTIVE
        ):
            why = (
                "The lead is closed"
                if not lead.is_open
                else "The follow-up is not active"
            )
            _close(touchpoint, TouchPointStatus.CANCELLED, why, now)
            stats.cancelled += 1
            continue
        window = messaging.recipient_window_for(
            location=lead.location, phone=lead.phone, policy=context.policy
        )
        if window is not None and not window.allows(now):
            _defer(touchpoint, window.next_allowed(now), "Quiet hours", now)
            stats.deferred += 1
            continue
        ready.append(touchpoint)
    links = chat_services.chat_links_create(
        leads=list({t.lead_id: t.lead for t in ready}.values())
    )
    to_send: list[tuple[TouchPoint, messaging.SendRequest]] = []
    for touchpoint in ready:
        lead = touchpoint.lead
        chat_link = messaging.public_url(host=context.tenant_host, path=links[lead.pk])
        rendered = services.step_render(
            step=touchpoint.step,
            context=services.template_context(
                lead=lead, chat_link=chat_link, channel=touchpoint.channel, brand=brand
            ),
            cache=templates,
        )
        request = messaging.SendRequest(
            channel=touchpoint.channel,
            kind=MessageKind.CADENCE,
            lead=lead,
            body=rendered.body,
            subject=rendered.subject,
        )
        to_send.append((touchpoint, request))
    if not to_send:
        return
    # Committed before any provider call: a crash from here on leaves "sending" rows for review.
    sending_ids = [touchpoint.pk for touchpoint, _ in to_send]
    TouchPoint.objects.filter(
        pk__in=sending_ids, status=TouchPointStatus.CLAIMED
    ).update(status=TouchPointStatus.SENDING, sending_at=now)
    messages = messaging.messages_send(
        [request for _, request in to_send], now=now, context=context
    )
    finished = []
    for (touchpoint, _), message in zip(to_send, messages, strict=True):
        if (
            message.status == MessageStatus.BLOCKED
            and message.block_reason in DEFERRABLE
        ):
            _defer_after_block(touchpoint, message, now, context)
            stats.deferred += 1
            continue
        status = OUTCOME.get(message.status, TouchPointStatus.NEEDS_REVIEW)
        touchpoint.status = status
        touchpoint.outbound_message = message
        touchpoint.reason = (
            message.get_block_reason_display()
            if message.block_reason
            else message.error[:200]
        )
        touchpoint.finished_at = now
        touchpoint.claimed_until = None
        finished.append(touchpoint)
        stats.count(status)
    _finish(finished, now)


def _finish(touchpoints: list[TouchPoint], now: datetime) -> None:
    """Store each row's outcome and message in one statement (bulk_update's CASE per row is slow at scale)."""
    if not touchpoints:
        return
    table = TouchPoint._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} AS t
            SET status = v.status, reason = v.reason, outbound_message_id = v.message_id,
                finished_at = %s, claimed_until = NULL
            FROM (
                SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS status,
                       unnest(%s::text[]) AS reason, unnest(%s::bigint[]) AS message_id
            ) AS v
            WHERE t.id = v.id
            """,  # noqa: S608 - the table name is our model's, the values are parameters
            [
                now,
                [t.pk for t in touchpoints],
                [t.status for t in touchpoints],
                [t.reason for t in touchpoints],
                [
                    t.outbound_message.pk if t.outbound_message else None
                    for t in touchpoints
                ],
            ],
        )


def _close(touchpoint: TouchPoint, status: str, reason: str, now: datetime) -> None:
    TouchPoint.objects.filter(pk=touchpoint.pk).update(
        status=status, reason=reason[:200], finished_at=now, claimed_until=None
    )


def _defer(touchpoint: TouchPoint, until: datetime, reason: str, now: datetime) -> None:
    TouchPoint.objects.filter(pk=touchpoint.pk).update(
        status=TouchPointStatus.SCHEDULED,
        due_at=until,
        claimed_until=None,
        sending_at=None,
        reason=f"{reason}: moved to {until:%Y-%m-%d %H:%M} UTC"[:200],
        deferrals=touchpoint.deferrals + 1,
    )


def _defer_after_block(
    touchpoint: TouchPoint,
    message: OutboundMessage,
    now: datetime,
    context: messaging.BatchContext,
) -> None:
    """The gate held the message back for a reason that passes: try again when it has passed."""
    if message.block_reason == BlockReason.QUIET_HOURS:
        window = messaging.recipient_window_for(
            location=touchpoint.lead.location,
            phone=touchpoint.lead.phone,
            policy=context.policy,
        )
        until = (
            window.next_allowed(now) if window is not None else now + timedelta(hours=1)
        )
        _defer(touchpoint, until, "Quiet hours", now)
        return
    oldest = (
        OutboundMessage.objects.filter(
            to=message.to,
            is_automated=True,
            status__in=messaging.COUNTED_STATUSES,
            created_at__gte=now - timedelta(hours=24),
        )
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    until = (oldest or now) + timedelta(hours=24, minutes=1)
    _defer(touchpoint, until, "Daily cap", now)


def touchpoints_recover_stuck(*, now: datetime | None = None) -> int:
    """Settle rows left ``sending`` by a worker that died, from what their messages say.

    A batch commits its OutboundMessage rows before it calls any provider, with
    ``created_at`` equal to the rows' ``sending_at``, so each stuck row finds its
    message (rows of one lead and channel in one batch pair up in order):

    - no message: nothing reached a provider; the row is scheduled again, due now;
    - a message with an outcome (sent, failed, recorded, blocked): the row takes it,
      as the worker would have (a block that passes with time schedules it again);
    - a message still ``sending``: the provider may or may not have it; the message
      becomes ``unknown`` and the row ``needs_review``, linked to it. Never resent.

    Returns the number of rows settled.
    """
    now = now or timezone.now()
    with transaction.atomic():
        stuck = list(
            TouchPoint.objects.filter(
                status=TouchPointStatus.SENDING, sending_at__lt=now - SENDING_TIMEOUT
            )
            .select_for_update(skip_locked=True)
            .order_by("pk")
        )
        if not stuck:
            return 0
        messages = _batch_messages(stuck)
        settled: list[TouchPoint] = []
        unknown: list[int] = []
        for touchpoint in stuck:
            message = messages.get(touchpoint.pk)
            if message is None or (
                message.status == MessageStatus.BLOCKED
                and message.block_reason in DEFERRABLE
            ):
                _defer(touchpoint, now, "The worker stopped before sending", now)
                continue
            if message.status == MessageStatus.SENDING:
                unknown.append(message.pk)
                touchpoint.status = TouchPointStatus.NEEDS_REVIEW
                touchpoint.reason = (
                    "The worker stopped while sending; check the message before "
                    "sending it by hand"
                )
            else:
                touchpoint.status = OUTCOME.get(
                    message.status, TouchPointStatus.NEEDS_REVIEW
                )
                touchpoint.reason = (
                    message.get_block_reason_display()
                    if message.block_reason
                    else message.error[:200]
                )
            touchpoint.outbound_message = message
            settled.append(touchpoint)
        OutboundMessage.objects.filter(
            pk__in=unknown, status=MessageStatus.SENDING
        ).update(
            status=MessageStatus.UNKNOWN,
            error="The worker stopped while sending: the provider may or may not "
            "have accepted it",
            updated_at=now,
        )
        _finish(settled, now)
    if unknown:
        logger.warning(
            "%d touch point(s) left sending by a stopped worker need review",
            len(unknown),
        )
    return len(stuck)


def _batch_messages(touchpoints: list[TouchPoint]) -> dict[int, OutboundMessage]:
    """The cadence message each row's batch recorded for it, by touch point id."""
    rows = OutboundMessage.objects.filter(
        lead_id__in={t.lead_id for t in touchpoints},
        kind=MessageKind.CADENCE,
        created_at__in={t.sending_at for t in touchpoints},
    ).order_by("pk")
    waiting: dict[tuple, list[OutboundMessage]] = {}
    for message in rows:
        key = (message.lead_id, message.channel, message.created_at)
        waiting.setdefault(key, []).append(message)
    found = {}
    for touchpoint in touchpoints:  # in pk order, as the batch recorded them
        queue = waiting.get(
            (touchpoint.lead_id, touchpoint.channel, touchpoint.sending_at)
        )
        if queue:
            found[touchpoint.pk] = queue.pop(0)
    return found


def touchpoints_due_exist(*, now: datetime | None = None) -> bool:
    return _due(now or timezone.now(), None).exists()
