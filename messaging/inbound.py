"""Inbound traffic: customers' SMS, the providers' delivery reports, unsubscribe requests.

- ``inbound_sms_receive``: a customer's text. STOP/START/HELP keywords are
  answered here (through the gate); anything else is a reply that engages the
  lead and goes to ``INBOUND_REPLY_HANDLERS``.
- ``outbound_status_apply``: a Twilio status callback.
- ``sendgrid_events_apply``: a batch of SendGrid Event Webhook events, each
  routed to the brand named in its custom args.
- ``unsubscribe_confirm``: a recipient's click (or one-click POST) on an
  email's unsubscribe link.

Signature checks (``twilio_signature_verify``, ``sendgrid_signature_verify``)
use the providers' own SDKs and raise SignatureError; views turn that into 403.

Delivery statuses never move backwards: a late report of an earlier status
(Twilio and SendGrid both deliver out of order) changes nothing, and a final
status is never overwritten by an intermediate one.

Precondition of every function that stores something: called outside a
transaction, like ``messaging.services.messages_send``, so that what it stores
is committed before anything is sent or any handler runs.
"""

from __future__ import annotations

import binascii
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, tenant_context

from leadorch.errors import ApplicationError
from leadorch.phones import format_phone, normalize_phone
from leads.models import OPEN_STATUSES, Lead, LeadStatus
from leads.services import lead_advance
from messaging.backends import TWILIO_UNSUBSCRIBED
from messaging.hooks import hooks_run
from messaging.models import (
    Channel,
    InboundKind,
    InboundMessage,
    MessageKind,
    OptOutSource,
    OutboundMessage,
    ProviderEvent,
)
from messaging.services import (
    message_send,
    optout_record,
    optout_revoke,
    policy_get,
    public_url,
)
from tenants.models import Tenant

logger = logging.getLogger(__name__)


class SignatureError(ApplicationError):
    """A webhook that cannot be shown to come from the provider (unconfigured, missing, invalid, stale)."""


# --- keywords ----------------------------------------------------------------------------------

STOP_KEYWORDS = frozenset(
    {
        "stop",
        "stopall",
        "unsubscribe",
        "cancel",
        "end",
        "quit",
        "revoke",
        "optout",
        "opt out",
        "opt-out",
    }
)
START_KEYWORDS = frozenset({"start", "unstop"})
HELP_KEYWORDS = frozenset({"help", "info"})
# Anything that is not a letter or a digit, at either end of the message.
_EDGES = re.compile(r"^[\W_]+|[\W_]+$")
_SPACES = re.compile(r"\s+")


def keyword_of(body: str) -> str:
    """The keyword ``body`` is: "stop", "start", "help", or "" for anything else.

    Case, surrounding whitespace and punctuation are ignored ("Stop.", " stop! ",
    "STOP\\n"). Only a message that is the keyword and nothing more counts: a
    sentence such as "please stop texting me" is a reply for a person (or the
    chat) to read, not an opt-out; carriers and Twilio read keywords the same way.
    """
    text = _SPACES.sub(" ", _EDGES.sub("", body or "")).casefold()
    if text in STOP_KEYWORDS:
        return InboundKind.STOP
    if text in START_KEYWORDS:
        return InboundKind.START
    if text in HELP_KEYWORDS:
        return InboundKind.HELP
    return ""


# --- Twilio signatures -------------------------------------------------------------------------


def twilio_callback_urls(*, hosts: Iterable[str], path: str) -> list[str]:
    """The public URLs Twilio may have signed for ``path``: one per host (without its port), in order.

    Each is built like the callback URLs we hand to Twilio: the configured scheme
    (https with ``HTTPS``) and ``PUBLIC_PORT_SUFFIX``.
    """
    return list(
        dict.fromkeys(public_url(host=host, path=path) for host in hosts if host)
    )


def twilio_signature_verify(
    *, hosts: Iterable[str], path: str, params: Any, signature: str
) -> None:
    """Check ``X-Twilio-Signature`` with the SDK's RequestValidator and ``TWILIO_AUTH_TOKEN``.

    ``params`` are the POSTed form fields (a QueryDict); ``hosts`` the hosts the
    URL may have named (the request's, the brand's primary domain). Raises
    SignatureError (code ``not_configured``, ``missing_signature`` or
    ``invalid_signature``); returns None when one candidate URL verifies.
    """
    from twilio.request_validator import RequestValidator

    token = settings.TWILIO_AUTH_TOKEN
    if not token:
        raise SignatureError(
            "TWILIO_AUTH_TOKEN is not configured, so Twilio's requests cannot be verified.",
            code="not_configured",
        )
    if not signature:
        raise SignatureError(
            "The X-Twilio-Signature header is missing.", code="missing_signature"
        )
    validator = RequestValidator(token)
    for url in twilio_callback_urls(hosts=hosts, path=path):
        if validator.validate(url, params, signature):
            return
    raise SignatureError(
        "The X-Twilio-Signature header does not match this request and TWILIO_AUTH_TOKEN.",
        code="invalid_signature",
    )


# --- inbound SMS -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundResult:
    """What became of one inbound SMS.

    ``duplicate``: the MessageSid was seen before and nothing was done.
    ``changed``: the keyword changed something (a new opt-out, a revoked opt-out,
    a lead moved to engaged). ``reply``: the message we answered with, if any.
    """

    inbound: InboundMessage
    duplicate: bool = False
    changed: bool = False
    reply: OutboundMessage | None = None


def inbound_sms_receive(
    *, provider_message_id: str, from_number: str, to_number: str, body: str
) -> InboundResult:
    """Store a customer's SMS once and act on it.

    Stores an InboundMessage (unique by ``provider_message_id``; a redelivery
    returns ``duplicate=True`` and does nothing), linked to the sender's lead
    (the newest lead with that phone, open ones first), and after that row
    commits:

    - STOP and friends: opt the number out of SMS; when it is a new opt-out, one
      confirmation (kind system, allowed to an opted-out number); then
      ``OPT_OUT_HANDLERS`` (channel, address).
    - START: revoke the opt-out; when there was one, one confirmation.
    - HELP: one answer with the brand's name and help contact. Does not opt out.
    - anything else: a reply. The lead (if any) moves forward to engaged, and
      ``INBOUND_REPLY_HANDLERS`` (lead, inbound) run.

    Precondition: outside a transaction (answers go through the gate).
    """
    phone = _phone_or_raw(from_number)
    lead = _lead_for_phone(phone)
    kind = keyword_of(body) or InboundKind.REPLY
    inbound = InboundMessage(
        provider_message_id=provider_message_id[:100],
        from_number=phone[:32],
        to_number=_phone_or_raw(to_number)[:32],
        body=body,
        kind=kind,
        lead=lead,
    )
    try:
        with transaction.atomic():
            inbound.save()
    except IntegrityError:
        existing = InboundMessage.objects.get(
            provider_message_id=provider_message_id[:100]
        )
        logger.info("Inbound SMS %s was received before; ignored", provider_message_id)
        return InboundResult(inbound=existing, duplicate=True)

    if kind == InboundKind.STOP:
        return _on_stop(inbound, lead, phone)
    if kind == InboundKind.START:
        return _on_start(inbound, lead, phone)
    if kind == InboundKind.HELP:
        return _on_help(inbound, lead, phone)
    return _on_reply(inbound, lead)


def _phone_or_raw(raw: str) -> str:
    """``raw`` in E.164 when it is a phone number, else as given (short codes, garbage)."""
    try:
        return normalize_phone(raw) or ""
    except ValidationError:
        return (raw or "").strip()


def _lead_for_phone(phone: str) -> Lead | None:
    """The lead this number belongs to: the most recently created, preferring open leads."""
    if not phone:
        return None
    return (
        Lead.objects.filter(phone=phone)
        .select_related("location")
        .annotate(
            closed=Case(
                When(status__in=list(OPEN_STATUSES), then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("closed", "-created_at", "-pk")
        .first()
    )


def brand_name() -> str:
    """The name of the brand whose schema the connection is in."""
    name = getattr(connection.tenant, "name", "")
    if name:
        return name
    return (
        Tenant.objects.filter(schema_name=connection.schema_name)
        .values_list("name", flat=True)
        .first()
        or ""
    )


def _system_sms(
    *, lead: Lead | None, phone: str, body: str, allow_opted_out: bool
) -> OutboundMessage:
    return message_send(
        channel=Channel.SMS,
        kind=MessageKind.SYSTEM,
        lead=lead,
        to=phone,
        body=body,
        allow_opted_out=allow_opted_out,
    )


def _on_stop(inbound: InboundMessage, lead: Lead | None, phone: str) -> InboundResult:
    _, created = optout_record(
        channel=Channel.SMS,
        address=phone,
        source=OptOutSource.SMS_KEYWORD,
        detail=f"Texted {inbound.body.strip()[:40]!r} (message {inbound.provider_message_id})",
    )
    reply = None
    if created:
        reply = _system_sms(
            lead=lead,
            phone=phone,
            body=f"{brand_name()}: You are unsubscribed and will get no more texts from us. Reply START to resubscribe.",
            allow_opted_out=True,
        )
    hooks_run("OPT_OUT_HANDLERS", channel=Channel.SMS, address=phone)
    return InboundResult(inbound=inbound, changed=created, reply=reply)


def _on_start(inbound: InboundMessage, lead: Lead | None, phone: str) -> InboundResult:
    revoked = optout_revoke(channel=Channel.SMS, address=phone)
    reply = None
    if revoked:
        reply = _system_sms(
            lead=lead,
            phone=phone,
            body=f"{brand_name()}: You are resubscribed to our texts. Reply HELP for help, STOP to opt out.",
            allow_opted_out=False,
        )
    return InboundResult(inbound=inbound, changed=revoked, reply=reply)


def help_contact(lead: Lead | None) -> str:
    """Whom HELP points to: the policy's help contact, else the lead's location phone, else its email."""
    contact = policy_get().help_contact.strip()
    if contact or lead is None:
        return contact
    location = lead.location
    return format_phone(location.phone) if location.phone else location.email


def _on_help(inbound: InboundMessage, lead: Lead | None, phone: str) -> InboundResult:
    contact = help_contact(lead)
    help_line = f" For help, contact {contact}." if contact else ""
    # The customer asked: HELP is answered even to a number that opted out (it stays opted out).
    reply = _system_sms(
        lead=lead,
        phone=phone,
        body=f"{brand_name()}:{help_line} Reply STOP to opt out.",
        allow_opted_out=True,
    )
    return InboundResult(inbound=inbound, reply=reply)


def _on_reply(inbound: InboundMessage, lead: Lead | None) -> InboundResult:
    if lead is None:
        logger.info(
            "Inbound SMS %s from a number of no lead", inbound.provider_message_id
        )
        return InboundResult(inbound=inbound)
    advanced = lead_advance(
        lead=lead, to_status=LeadStatus.ENGAGED, reason="Replied by SMS"
    )
    hooks_run("INBOUND_REPLY_HANDLERS", lead=lead, inbound=inbound)
    return InboundResult(inbound=inbound, changed=advanced)


# --- delivery statuses -------------------------------------------------------------------------

# Later is higher; a status only replaces a lower one. The final ones outrank every other.
TWILIO_STATUS_RANK: dict[str, int] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 10,
    "undelivered": 10,
    "failed": 10,
    "canceled": 10,
    "partially_delivered": 10,
    "read": 11,
}
SENDGRID_STATUS_RANK: dict[str, int] = {
    "processed": 0,
    "deferred": 1,
    "delivered": 10,
    "bounce": 10,
    "blocked": 10,
    "dropped": 10,
    "open": 11,
    "click": 12,
    "spamreport": 13,
    "unsubscribe": 13,
    "group_unsubscribe": 13,
}


def _delivery_status_apply(
    *, message_id: int, status: str, ranks: Mapping[str, int], error_code: str = ""
) -> bool:
    """Record ``status`` on the message unless it already has a later one. True when it changed."""
    if status not in ranks:
        return False
    with transaction.atomic():
        current = (
            OutboundMessage.objects.select_for_update()
            .values_list("delivery_status", flat=True)
            .get(pk=message_id)
        )
        if current in ranks and ranks[current] >= ranks[status]:
            return False
        now = timezone.now()
        fields: dict[str, Any] = {
            "delivery_status": status,
            "delivery_updated_at": now,
            "updated_at": now,
        }
        if error_code:
            fields["error_code"] = error_code[:32]
        OutboundMessage.objects.filter(pk=message_id).update(**fields)
    return True


@dataclass(frozen=True)
class StatusResult:
    """``found``: a message has this id; ``applied``: its delivery status changed; ``opted_out``: a new opt-out."""

    found: bool
    applied: bool = False
    opted_out: bool = False


def outbound_status_apply(
    *, provider_message_id: str, status: str, error_code: str
) -> StatusResult:
    """Apply a Twilio status callback to the SMS it reports on.

    Sets ``delivery_status`` (and ``error_code`` when Twilio names one) unless the
    message already has a later status. Error 21610 (the recipient texted STOP
    to Twilio) opts the number out and runs ``OPT_OUT_HANDLERS``. An unknown
    MessageSid changes nothing.
    """
    message = (
        OutboundMessage.objects.filter(
            backend="twilio", provider_message_id=provider_message_id
        )
        .only("pk", "to", "channel")
        .first()
        if provider_message_id
        else None
    )
    if message is None:
        logger.info(
            "Twilio status %r for unknown message %r ignored",
            status,
            provider_message_id,
        )
        return StatusResult(found=False)
    error_code = (error_code or "").strip()
    applied = _delivery_status_apply(
        message_id=message.pk,
        status=(status or "").strip().lower(),
        ranks=TWILIO_STATUS_RANK,
        error_code=error_code,
    )
    opted_out = False
    if error_code == str(TWILIO_UNSUBSCRIBED):
        _, opted_out = optout_record(
            channel=Channel.SMS,
            address=message.to,
            source=OptOutSource.PROVIDER,
            detail=f"Twilio error {error_code} on message {provider_message_id}: the recipient unsubscribed",
        )
        hooks_run("OPT_OUT_HANDLERS", channel=Channel.SMS, address=message.to)
    return StatusResult(found=True, applied=applied, opted_out=opted_out)


# --- SendGrid Event Webhook --------------------------------------------------------------------

SENDGRID_MAX_SKEW_SECONDS = 300
# Events after which we must not email the address again.
SENDGRID_OPT_OUT_EVENTS = frozenset(
    {"bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"}
)


def sendgrid_signature_verify(
    *, body: bytes, signature: str, timestamp: str, now: float | None = None
) -> None:
    """Check SendGrid's ECDSA signature over ``timestamp + body`` with ``SENDGRID_WEBHOOK_PUBLIC_KEY``.

    The timestamp must be within 5 minutes of ``now``. Raises SignatureError
    (``not_configured``, ``missing_signature``, ``stale_timestamp``,
    ``invalid_signature``). Uses the SDK's EventWebhook.
    """
    from sendgrid.helpers.eventwebhook import EventWebhook

    public_key = settings.SENDGRID_WEBHOOK_PUBLIC_KEY.strip()
    if not public_key:
        raise SignatureError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not configured, so SendGrid's events cannot be verified.",
            code="not_configured",
        )
    if not signature or not timestamp:
        raise SignatureError(
            "The X-Twilio-Email-Event-Webhook-Signature or -Timestamp header is missing.",
            code="missing_signature",
        )
    try:
        sent_at = int(timestamp)
    except ValueError as error:
        raise SignatureError(
            "The event timestamp is not a number.", code="invalid_signature"
        ) from error
    if (
        abs((now if now is not None else time.time()) - sent_at)
        > SENDGRID_MAX_SKEW_SECONDS
    ):
        raise SignatureError(
            "The event timestamp is more than 5 minutes from now.",
            code="stale_timestamp",
        )
    try:
        verifier = EventWebhook(public_key)
    except (ValueError, TypeError) as error:
        logger.error("SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key: %s", error)
        raise SignatureError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key.",
            code="not_configured",
        ) from error
    try:
        valid = verifier.verify_signature(body.decode("utf-8"), signature, timestamp)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        valid = False
    if not valid:
        raise SignatureError(
            "The event signature does not match the body.", code="invalid_signature"
        )


def sendgrid_events_parse(body: bytes) -> list[Any]:
    """The events of a verified body. Raises ApplicationError (``invalid_json``) unless it is a JSON list.

    NUL characters are dropped from every string: PostgreSQL text cannot hold them.
    """
    try:
        events = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApplicationError(
            f"The body is not valid JSON: {error}.", code="invalid_json"
        ) from error
    except RecursionError as error:  # nested deeper than the decoder goes
        raise ApplicationError(
            "The body is not valid JSON: nested too deeply.", code="invalid_json"
        ) from error
    if not isinstance(events, list):
        raise ApplicationError(
            "The body must be a JSON list of events.", code="invalid_json"
        )
    return [_without_nul(event) for event in events]


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


@dataclass
class EventCounts:
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "applied": self.applied,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
        }


APPLIED, DUPLICATE, SKIPPED = "applied", "duplicate", "skipped"


def sendgrid_events_apply(
    *, events: list[Any], host_tenant: Tenant | None
) -> EventCounts:
    """Apply a verified batch of SendGrid events, each inside the brand it belongs to.

    An event's brand is its ``tenant`` custom arg (a schema name). At a brand's
    host (``host_tenant``) only that brand's events are applied, events naming
    another brand are skipped, and events naming none are taken as the host's.
    At the platform host (``host_tenant=None``) an event must name an existing
    brand. Each applied event is recorded as a ProviderEvent (by
    ``sg_event_id``), so a redelivered batch counts its events as duplicates
    and changes nothing.

    Precondition: outside a transaction (each event commits on its own).
    """
    counts = EventCounts()
    known: dict[str, Tenant | None] = {}
    for event in events:
        tenant = _event_tenant(event, host_tenant=host_tenant, known=known)
        if tenant is None:
            counts.skipped += 1
            continue
        with tenant_context(tenant):
            outcome = _sendgrid_event_apply(event)
        if outcome == APPLIED:
            counts.applied += 1
        elif outcome == DUPLICATE:
            counts.duplicates += 1
        else:
            counts.skipped += 1
    return counts


def _event_tenant(
    event: Any, *, host_tenant: Tenant | None, known: dict[str, Tenant | None]
) -> Tenant | None:
    """The brand an event is applied in, or None to skip it. ``known`` caches brands by schema."""
    if not isinstance(event, dict):
        return None
    named = event.get("tenant")
    schema = named if isinstance(named, str) and named else ""
    if host_tenant is not None:
        if schema and schema != host_tenant.schema_name:
            logger.info(
                "SendGrid event for brand %r posted at brand %r skipped",
                schema,
                host_tenant.schema_name,
            )
            return None
        return host_tenant
    if not schema or schema == get_public_schema_name():
        return None
    if schema not in known:
        known[schema] = (
            Tenant.objects.exclude(schema_name=get_public_schema_name())
            .filter(schema_name=schema)
            .first()
        )
    return known[schema]


def _sendgrid_message(event: dict[str, Any]) -> OutboundMessage | None:
    """The email an event is about: by our ``message`` custom arg, else by SendGrid's message id."""
    reference = event.get("message")
    if isinstance(reference, str) and reference:
        try:
            public_id = uuid.UUID(reference)
        except ValueError:
            public_id = None
        if public_id is not None:
            message = OutboundMessage.objects.filter(
                public_id=public_id, channel=Channel.EMAIL
            ).first()
            if message is not None:
                return message
    sg_message_id = event.get("sg_message_id")
    if isinstance(sg_message_id, str) and sg_message_id.split(".")[0]:
        return OutboundMessage.objects.filter(
            backend="sendgrid", provider_message_id=sg_message_id.split(".")[0]
        ).first()
    return None


def _sendgrid_event_apply(event: dict[str, Any]) -> str:
    """Apply one event in the current brand's schema: applied, duplicate or skipped."""
    event_type = str(event.get("event") or "").strip().lower()
    if event_type not in SENDGRID_STATUS_RANK or event_type == "blocked":
        return SKIPPED
    bounce_type = str(event.get("type") or "bounce").strip().lower()
    status = (
        "blocked" if event_type == "bounce" and bounce_type == "blocked" else event_type
    )
    message = _sendgrid_message(event)
    email = event.get("email")
    address = (
        (
            email
            if isinstance(email, str) and email.strip()
            else (message.to if message else "")
        )
        .strip()
        .lower()
    )
    opts_out = (
        event_type in SENDGRID_OPT_OUT_EVENTS and status != "blocked" and bool(address)
    )
    if message is None and not opts_out:
        logger.info("SendGrid %s event for no known message skipped", event_type)
        return SKIPPED
    event_id = str(event.get("sg_event_id") or "")[:200]
    with transaction.atomic():
        if event_id:
            try:
                with transaction.atomic():
                    ProviderEvent.objects.create(provider="sendgrid", event_id=event_id)
            except IntegrityError:
                return DUPLICATE
        if message is not None:
            _delivery_status_apply(
                message_id=message.pk, status=status, ranks=SENDGRID_STATUS_RANK
            )
        if opts_out:
            optout_record(
                channel=Channel.EMAIL,
                address=address,
                source=OptOutSource.PROVIDER,
                detail=f"SendGrid {status} event {event_id}".strip(),
            )
    if opts_out:
        hooks_run("OPT_OUT_HANDLERS", channel=Channel.EMAIL, address=address)
    return APPLIED


# --- unsubscribe links -------------------------------------------------------------------------


def unsubscribe_confirm(*, address: str, one_click: bool) -> bool:
    """Opt ``address`` out of email for this brand; True when it was not opted out before.

    Idempotent: a second request keeps the first opt-out. Runs ``OPT_OUT_HANDLERS``
    every time (they are idempotent too). ``address`` comes from a verified
    unsubscribe token (messaging.unsubscribe), never from the request itself.
    """
    address = address.strip().lower()
    _, created = optout_record(
        channel=Channel.EMAIL,
        address=address,
        source=OptOutSource.ONE_CLICK if one_click else OptOutSource.EMAIL_LINK,
        detail="One-click unsubscribe (RFC 8058)" if one_click else "Unsubscribe link",
    )
    hooks_run("OPT_OUT_HANDLERS", channel=Channel.EMAIL, address=address)
    return created
