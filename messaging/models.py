"""Outbound messages and the rules around them: opt-outs, the whitelist, the brand's policy, inbound SMS."""

from __future__ import annotations

import uuid
from datetime import time

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from leadorch.models import BaseModel


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    EMAIL = "email", "Email"


class MessageKind(models.TextChoices):
    CADENCE = "cadence", "Follow-up"
    CONFIRMATION = "confirmation", "Booking confirmation"
    REMINDER = "reminder", "Reminder"
    REBOOKING = "rebooking", "Rebooking follow-up"
    ASSISTANT = "assistant", "Assistant reply"
    STAFF = "staff", "Staff reply"
    SYSTEM = "system", "Opt-out or help reply"


class MessageStatus(models.TextChoices):
    BLOCKED = "blocked", "Blocked"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    UNKNOWN = "unknown", "Unknown: needs review"
    RECORDED = "recorded", "Recorded (outbox, not sent)"


class BlockReason(models.TextChoices):
    MODE_DISABLED = "mode_disabled", "Outbound messaging is disabled for the brand"
    WHITELIST_EMPTY = "whitelist_empty", "Whitelist mode with an empty whitelist"
    NOT_WHITELISTED = "not_whitelisted", "The lead's email is not on the whitelist"
    OPTED_OUT = "opted_out", "The recipient opted out"
    QUIET_HOURS = "quiet_hours", "Outside the recipient's allowed hours"
    DAILY_CAP = "daily_cap", "Daily message cap reached for the recipient"
    NO_ADDRESS = "no_address", "No phone or email for this channel"
    PROVIDER_NOT_CONFIGURED = (
        "provider_not_configured",
        "The channel's provider is not configured",
    )
    LEAD_CLOSED = "lead_closed", "The lead is closed"


class OutboundMessage(BaseModel):
    """Every decision about an SMS or email, sent or not. Written only by messaging.services."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    lead = models.ForeignKey(
        "leads.Lead",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="outbound_messages",
    )
    location = models.ForeignKey(
        "locations.Location",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="outbound_messages",
    )
    channel = models.CharField(max_length=8, choices=Channel)
    kind = models.CharField(max_length=16, choices=MessageKind)
    is_automated = models.BooleanField(
        default=True, help_text="Counts toward the daily cap."
    )
    to = models.CharField(max_length=254)
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    status = models.CharField(max_length=12, choices=MessageStatus)
    block_reason = models.CharField(max_length=32, choices=BlockReason, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    backend = models.CharField(max_length=16, blank=True)
    provider_message_id = models.CharField(max_length=100, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    attempted_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivery_status = models.CharField(
        max_length=32, blank=True, help_text="As the provider last reported it."
    )
    delivery_updated_at = models.DateTimeField(null=True, blank=True)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ("-created_at", "-pk")
        constraints = [
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values),
                name="messaging_out_channel_valid",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=MessageKind.values),
                name="messaging_out_kind_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=MessageStatus.values),
                name="messaging_out_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(status="blocked", block_reason__in=BlockReason.values)
                | (~Q(status="blocked") & Q(block_reason="")),
                name="messaging_out_blocked_has_reason",
            ),
            models.UniqueConstraint(
                fields=["backend", "provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="messaging_out_provider_id_unique",
            ),
        ]
        indexes = [
            # serves the daily cap: automated messages to one recipient in the last 24 hours
            models.Index(
                fields=["to", "created_at"],
                name="messaging_out_to_recent_idx",
                condition=Q(is_automated=True),
            ),
            # serves status callbacks and event webhooks
            models.Index(
                fields=["provider_message_id"],
                name="messaging_out_provider_idx",
                condition=~Q(provider_message_id=""),
            ),
            models.Index(
                fields=["status", "created_at"], name="messaging_out_status_idx"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.get_channel_display()} to {self.to} ({self.get_status_display()})"
        )


class OptOutSource(models.TextChoices):
    SMS_KEYWORD = "sms_keyword", "SMS keyword (STOP and friends)"
    EMAIL_LINK = "email_link", "Unsubscribe link"
    ONE_CLICK = "one_click", "One-click unsubscribe"
    PROVIDER = "provider", "Reported by the provider"
    STAFF = "staff", "Entered by staff"


class OptOut(BaseModel):
    """A recipient who must get nothing on a channel. Re-subscribing closes the row; history stays."""

    channel = models.CharField(max_length=8, choices=Channel)
    address = models.CharField(
        max_length=254, help_text="E.164 phone or lower-case email."
    )
    source = models.CharField(max_length=16, choices=OptOutSource)
    detail = models.CharField(max_length=500, blank=True)
    revoked_at = models.DateTimeField(
        null=True, blank=True, help_text="When the recipient opted back in."
    )

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "opt-out"
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "address"],
                condition=Q(revoked_at__isnull=True),
                name="messaging_optout_one_active",
            ),
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values),
                name="messaging_optout_channel_valid",
            ),
            models.CheckConstraint(
                condition=Q(source__in=OptOutSource.values),
                name="messaging_optout_source_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.get_channel_display()})"


class WhitelistEntry(BaseModel):
    """In whitelist mode only leads with a listed email get anything."""

    email = models.EmailField(unique=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("email",)
        verbose_name_plural = "whitelist"
        constraints = [
            models.CheckConstraint(
                condition=Q(email=Lower("email")), name="messaging_whitelist_lowercase"
            ),
        ]

    def __str__(self) -> str:
        return self.email


def _default_quiet_start() -> time:
    return time(8, 0)


def _default_quiet_end() -> time:
    return time(21, 0)


class MessagingPolicy(models.Model):
    """The brand's messaging settings (one row per brand)."""

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    quiet_hours_start = models.TimeField(
        "send from",
        default=_default_quiet_start,
        help_text="Recipient's local time; not before 08:00.",
    )
    quiet_hours_end = models.TimeField(
        "send until",
        default=_default_quiet_end,
        help_text="Recipient's local time; not after 21:00.",
    )
    daily_cap = models.PositiveSmallIntegerField(
        default=3,
        help_text="Automated messages per recipient per 24 hours, across every flow.",
    )
    postal_address = models.CharField(
        max_length=300,
        blank=True,
        help_text="The brand's postal address, printed in every email.",
    )
    help_contact = models.CharField(
        max_length=200, blank=True, help_text="Phone or email given in answer to HELP."
    )
    sms_from = models.CharField(
        max_length=40,
        blank=True,
        help_text="Sender number or Messaging Service SID (default: TWILIO_FROM).",
    )
    email_from = models.EmailField(
        blank=True, help_text="Sender address (default: EMAIL_FROM)."
    )
    email_from_name = models.CharField(max_length=100, blank=True)

    class Meta:
        verbose_name = "messaging policy"
        verbose_name_plural = "messaging policy"
        constraints = [
            models.CheckConstraint(
                condition=Q(singleton=True), name="messaging_policy_singleton"
            ),
            models.CheckConstraint(
                condition=Q(
                    quiet_hours_start__gte=time(8, 0), quiet_hours_end__lte=time(21, 0)
                )
                & Q(quiet_hours_start__lt=F("quiet_hours_end")),
                name="messaging_policy_window_within_law",
                violation_error_message="Choose a window inside 08:00-21:00 that starts before it ends.",
            ),
            models.CheckConstraint(
                condition=Q(daily_cap__gte=1, daily_cap__lte=10),
                name="messaging_policy_cap_range",
                violation_error_message="The daily cap must be between 1 and 10.",
            ),
        ]

    def __str__(self) -> str:
        return "Messaging policy"


class OutboundModeChange(models.Model):
    """Audit of the brand's outbound mode switches."""

    from_mode = models.CharField(max_length=16)
    to_mode = models.CharField(max_length=16)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    note = models.CharField(max_length=300, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-changed_at",)

    def __str__(self) -> str:
        return f"{self.from_mode} → {self.to_mode} at {self.changed_at:%Y-%m-%d %H:%M}"


class InboundKind(models.TextChoices):
    STOP = "stop", "Opt-out keyword"
    START = "start", "Opt-in keyword"
    HELP = "help", "Help keyword"
    REPLY = "reply", "Reply"


class InboundMessage(models.Model):
    """An SMS a customer sent us, de-duplicated by the provider's id."""

    provider_message_id = models.CharField(max_length=100, unique=True)
    from_number = models.CharField(max_length=32)
    to_number = models.CharField(max_length=32, blank=True)
    body = models.TextField(blank=True)
    kind = models.CharField(max_length=8, choices=InboundKind)
    lead = models.ForeignKey(
        "leads.Lead",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inbound_messages",
    )
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-received_at",)

    def __str__(self) -> str:
        return f"{self.from_number}: {self.body[:40]}"


class ProviderEvent(models.Model):
    """Provider events already applied (SendGrid sg_event_id), so a redelivered batch changes nothing."""

    provider = models.CharField(max_length=16)
    event_id = models.CharField(max_length=200)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"], name="messaging_provider_event_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_id}"
