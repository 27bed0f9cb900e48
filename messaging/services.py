"""Sending: every outbound SMS and email goes through ``messages_send``.

For each message it gathers the facts (the brand's mode, the whitelist,
opt-outs, the recipient's allowed hours, the daily cap, whether the channel's
provider is configured), asks the gate, and commits an OutboundMessage with the
decision: ``blocked`` with its reason, or ``sending``. Only after that commit
does it call the backend, and it records the outcome (``sent``, ``failed``,
``unknown`` or, for the outbox, ``recorded``). A provider error is recorded on
its message and never stops the rest of the batch.

Precondition: called outside a transaction, so that ``sending`` is committed
before any provider call. Work that happens inside a transaction queues its
messages with ``enqueue_on_commit`` instead.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from leadorch.errors import ApplicationError
from leads.models import Lead
from locations.models import Location
from messaging import backends
from messaging.gate import IMMEDIATE_KINDS, PROACTIVE_KINDS, GateFacts, gate_decide
from messaging.models import (
    BlockReason,
    Channel,
    MessageStatus,
    MessagingPolicy,
    OptOut,
    OptOutSource,
    OutboundMessage,
    OutboundModeChange,
    WhitelistEntry,
)
from messaging.quiet_hours import Window, daily_cap_for, recipient_window
from tenants.models import Tenant

logger = logging.getLogger(__name__)

STATUS_FOR_OUTCOME = {
    backends.SENT: MessageStatus.SENT,
    backends.FAILED: MessageStatus.FAILED,
    backends.UNKNOWN: MessageStatus.UNKNOWN,
    backends.RECORDED: MessageStatus.RECORDED,
}
RESULT_FIELDS = (
    "status",
    "backend",
    "provider_message_id",
    "error_code",
    "error",
    "sent_at",
)
# Messages that count against the daily cap: every attempt that may have reached the recipient.
COUNTED_STATUSES = (
    MessageStatus.SENDING,
    MessageStatus.SENT,
    MessageStatus.UNKNOWN,
    MessageStatus.RECORDED,
)


@dataclass
class SendRequest:
    channel: str
    kind: str
    body: str
    lead: Lead | None = None
    location: Location | None = None
    to: str = ""
    subject: str = ""
    actor: Any = None
    allow_opted_out: bool = False


@dataclass
class BatchContext:
    """What every message of one batch shares, loaded once."""

    mode: str
    brand_name: str
    policy: MessagingPolicy
    whitelist: frozenset[str]
    tenant_host: str
    schema_name: str
    backends: dict[str, backends.Backend | None] = field(default_factory=dict)


def policy_get() -> MessagingPolicy:
    policy, _ = MessagingPolicy.objects.get_or_create(singleton=True)
    return policy


def whitelist_emails() -> frozenset[str]:
    """The whitelist: LEAD_EMAIL_WHITELIST from the environment and the admin's entries."""
    configured = {
        email.strip().lower()
        for email in settings.LEAD_EMAIL_WHITELIST
        if email.strip()
    }
    return frozenset(
        configured | set(WhitelistEntry.objects.values_list("email", flat=True))
    )


def batch_context() -> BatchContext:
    # Read the brand afresh: a switch to "disabled" must stop the very next batch.
    tenant = Tenant.objects.get(schema_name=connection.schema_name)
    domain = tenant.get_primary_domain()
    return BatchContext(
        mode=tenant.outbound_mode,
        brand_name=tenant.name,
        policy=policy_get(),
        whitelist=whitelist_emails(),
        tenant_host=domain.domain if domain else "",
        schema_name=tenant.schema_name,
        backends={channel: backends.backend_for(channel) for channel in Channel.values},
    )


def recipient_window_for(
    *, location: Location | None, phone: str, policy: MessagingPolicy
) -> Window | None:
    if location is None:
        return None
    return recipient_window(
        location_zone=location.time_zone,
        location_state=location.region,
        phone=phone,
        start=policy.quiet_hours_start,
        end=policy.quiet_hours_end,
    )


def _address(request: SendRequest) -> str:
    if request.to:
        return (
            request.to.strip().lower()
            if request.channel == Channel.EMAIL
            else request.to.strip()
        )
    if request.lead is None:
        return ""
    return request.lead.phone if request.channel == Channel.SMS else request.lead.email


def _lock_key(schema_name: str, address: str) -> int:
    digest = hashlib.blake2b(
        f"{schema_name}:{address}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def message_send(**kwargs: Any) -> OutboundMessage:
    """Send one message through the gate (see ``messages_send``)."""
    return messages_send([SendRequest(**kwargs)])[0]


def messages_send(
    requests: list[SendRequest],
    *,
    now: datetime | None = None,
    context: BatchContext | None = None,
) -> list[OutboundMessage]:
    """Decide, record and send a batch of messages; return their OutboundMessage rows in order."""
    if not requests:
        return []
    now = now or timezone.now()
    context = context or batch_context()
    decided = _decide_and_record(requests, now=now, context=context)
    recorded_later = []
    for message in decided:
        if message.status != MessageStatus.SENDING:
            continue
        backend = context.backends[message.channel]
        # A real provider's answer is stored at once: a crash later in the batch must
        # not leave a sent message looking unsent. The outbox's answer is certain,
        # so its rows are written together.
        write_now = not isinstance(backend, backends.OutboxBackend)
        _deliver(message, context=context, write=write_now)
        if not write_now:
            recorded_later.append(message)
    _write_results(recorded_later)
    return decided


def _write_results(messages: list[OutboundMessage]) -> None:
    """Store outcomes in one UPDATE per distinct outcome (the outbox gives them all the same one)."""
    groups: dict[tuple, list[int]] = {}
    for message in messages:
        key = tuple(getattr(message, field) for field in RESULT_FIELDS)
        groups.setdefault(key, []).append(message.pk)
    now = timezone.now()
    for key, ids in groups.items():
        OutboundMessage.objects.filter(pk__in=ids).update(
            **dict(zip(RESULT_FIELDS, key, strict=True)), updated_at=now
        )


def _decide_and_record(
    requests: list[SendRequest], *, now: datetime, context: BatchContext
) -> list[OutboundMessage]:
    addresses = [_address(request) for request in requests]
    with transaction.atomic():
        # Serialise with any other sender to the same recipients, so the cap cannot be overrun by a race.
        keys = sorted(
            {
                _lock_key(context.schema_name, address)
                for address in addresses
                if address
            }
        )
        if keys:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(key) FROM unnest(%s::bigint[]) AS key",
                    [keys],
                )
        opted_out = set(
            OptOut.objects.filter(
                revoked_at__isnull=True, address__in=[a for a in addresses if a]
            ).values_list("channel", "address")
        )
        recent = Counter(
            dict(
                OutboundMessage.objects.filter(
                    to__in=[a for a in addresses if a],
                    is_automated=True,
                    status__in=COUNTED_STATUSES,
                    created_at__gte=now - timedelta(hours=24),
                )
                .values_list("to")
                .annotate(n=Count("pk"))
                .values_list("to", "n")
            )
        )
        messages = []
        for request, address in zip(requests, addresses, strict=True):
            lead = request.lead
            location = request.location or (lead.location if lead else None)
            phone = (
                address
                if request.channel == Channel.SMS
                else (lead.phone if lead else "")
            )
            automated = request.kind in PROACTIVE_KINDS
            facts = GateFacts(
                mode=context.mode,
                channel=request.channel,
                kind=request.kind,
                address=address,
                lead_email=lead.email if lead else "",
                whitelist=context.whitelist,
                provider_configured=context.backends.get(request.channel) is not None,
                opted_out=(request.channel, address) in opted_out,
                lead_open=lead.is_open if lead else True,
                window=recipient_window_for(
                    location=location, phone=phone, policy=context.policy
                ),
                now=now,
                sent_last_24h=recent[address],
                daily_cap=daily_cap_for(
                    location_state=location.region if location else "",
                    phone=phone,
                    cap=context.policy.daily_cap,
                ),
                allow_opted_out=request.allow_opted_out,
            )
            reason = gate_decide(facts)
            if not reason and automated:
                recent[address] += 1  # later messages of this batch see this one
            messages.append(
                OutboundMessage(
                    lead=lead,
                    location=location,
                    channel=request.channel,
                    kind=request.kind,
                    is_automated=automated,
                    to=address[:254],
                    subject=request.subject[:200],
                    body=request.body,
                    status=MessageStatus.BLOCKED if reason else MessageStatus.SENDING,
                    block_reason=reason,
                    detail=_block_detail(reason, facts),
                    attempted_at=None if reason else now,
                    sent_by=request.actor
                    if getattr(request.actor, "pk", None)
                    else None,
                    created_at=now,
                )
            )
        OutboundMessage.objects.bulk_create(messages)
    return messages


def _block_detail(reason: str, facts: GateFacts) -> str:
    if reason == BlockReason.QUIET_HOURS and facts.window is not None:
        opens = facts.window.next_allowed(facts.now)
        return f"Allowed from {opens:%Y-%m-%d %H:%M} UTC ({facts.window.start:%H:%M}-{facts.window.end:%H:%M} in {', '.join(facts.window.zones)})"
    if reason == BlockReason.DAILY_CAP:
        return f"{facts.sent_last_24h} automated message(s) in the last 24 hours; the cap is {facts.daily_cap}"
    return ""


def _deliver(
    message: OutboundMessage, *, context: BatchContext, write: bool = True
) -> None:
    backend = context.backends[message.channel]
    assert backend is not None  # the gate blocks a channel without a backend
    try:
        if message.channel == Channel.SMS:
            result = backend.send_sms(_sms(message, context))
        else:
            result = backend.send_email(_email(message, context))
    except (
        Exception
    ) as error:  # a backend bug must not stop the batch; the outcome is unknown
        logger.exception(
            "Backend %s raised while sending message %s", backend.name, message.pk
        )
        result = backends.SendResult(
            backends.UNKNOWN, error=f"{error.__class__.__name__}: {error}"
        )
    message.status = STATUS_FOR_OUTCOME[result.outcome]
    message.backend = backend.name
    message.provider_message_id = result.provider_message_id[:100]
    message.error_code = result.error_code[:32]
    message.error = result.error[:5000]
    message.sent_at = timezone.now() if result.outcome == backends.SENT else None
    message.updated_at = timezone.now()
    if write:
        OutboundMessage.objects.filter(pk=message.pk).update(
            **{field: getattr(message, field) for field in RESULT_FIELDS},
            updated_at=message.updated_at,
        )
    if result.recipient_opted_out:
        optout_record(
            channel=message.channel,
            address=message.to,
            source=OptOutSource.PROVIDER,
            detail=f"The provider refused to send: {result.error}",
        )


def public_url(*, host: str, path: str) -> str:
    scheme = "https" if settings.HTTPS else "http"
    return f"{scheme}://{host}{settings.PUBLIC_PORT_SUFFIX}{path}"


def _sms(message: OutboundMessage, context: BatchContext) -> backends.Sms:
    window = recipient_window_for(
        location=message.location, phone=message.to, policy=context.policy
    )
    # Measured from the moment the gate let the message through, which is the batch's clock.
    validity = (
        window.seconds_left(message.attempted_at or timezone.now())
        if window is not None and message.kind not in IMMEDIATE_KINDS
        else None
    )
    callback = (
        public_url(host=context.tenant_host, path=reverse("messaging:twilio_status"))
        if context.tenant_host
        else ""
    )
    return backends.Sms(
        to=message.to,
        body=message.body,
        sender=context.policy.sms_from or settings.TWILIO_FROM,
        status_callback=callback,
        validity_period=validity or None,
    )


def _email(message: OutboundMessage, context: BatchContext) -> backends.Email:
    from messaging import unsubscribe

    link = unsubscribe.unsubscribe_url(host=context.tenant_host, address=message.to)
    footer = email_footer(policy=context.policy, unsubscribe_link=link)
    return backends.Email(
        to=message.to,
        subject=message.subject or "Your quote",
        text=f"{message.body}\n\n{footer}",
        from_email=context.policy.email_from or settings.EMAIL_FROM,
        from_name=context.policy.email_from_name,
        headers={
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        custom_args={"tenant": context.schema_name, "message": str(message.public_id)},
    )


def email_footer(*, policy: MessagingPolicy, unsubscribe_link: str) -> str:
    """The lines every email ends with: how to unsubscribe and the brand's postal address."""
    lines = ["--", f"Unsubscribe: {unsubscribe_link}"]
    if policy.postal_address:
        lines.append(policy.postal_address)
    return "\n".join(lines)


# --- opt-outs ----------------------------------------------------------------------------------


def optout_record(
    *, channel: str, address: str, source: str, detail: str = ""
) -> tuple[OptOut, bool]:
    """Suppress ``address`` on ``channel``. Idempotent: returns the active row and whether it is new."""
    address = address.strip().lower() if channel == Channel.EMAIL else address.strip()
    with transaction.atomic():
        existing = (
            OptOut.objects.select_for_update()
            .filter(channel=channel, address=address, revoked_at__isnull=True)
            .first()
        )
        if existing is not None:
            return existing, False
        return OptOut.objects.create(
            channel=channel, address=address, source=source, detail=detail[:500]
        ), True


def optout_revoke(*, channel: str, address: str) -> bool:
    """Opt ``address`` back in; True when it was opted out."""
    return bool(
        OptOut.objects.filter(
            channel=channel, address=address, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
    )


def outbound_mode_set(
    *, mode: str, actor: Any = None, note: str = ""
) -> OutboundModeChange:
    """Switch the current brand's outbound mode and log who did it. Takes effect at the next batch."""
    from django_tenants.utils import get_public_schema_name, schema_context

    from tenants.models import OutboundMode

    if mode not in OutboundMode.values:
        raise ApplicationError(f"Unknown outbound mode {mode!r}.", code="invalid_mode")
    schema_name = connection.schema_name
    with transaction.atomic():
        with schema_context(get_public_schema_name()):
            tenant = Tenant.objects.select_for_update().get(schema_name=schema_name)
            previous = tenant.outbound_mode
            Tenant.objects.filter(pk=tenant.pk).update(outbound_mode=mode)
        change = OutboundModeChange.objects.create(
            from_mode=previous,
            to_mode=mode,
            actor=actor if getattr(actor, "pk", None) else None,
            note=note[:300],
        )
    if hasattr(connection.tenant, "outbound_mode"):
        connection.tenant.outbound_mode = mode
    logger.warning(
        "Outbound mode of %s changed from %s to %s by %s",
        schema_name,
        previous,
        mode,
        actor,
    )
    return change
