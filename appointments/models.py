"""Appointments: a lead's booked work at a location, on one bay, for one service."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField, RangeOperators
from django.db import models
from django.db.models import F, Func, Q

from leadorch.models import BaseModel
from messaging.models import Channel


class AppointmentStatus(models.TextChoices):
    BOOKED = "booked", "Booked"
    CANCELLED = "cancelled", "Cancelled"
    COMPLETED = "completed", "Completed"
    NO_SHOW = "no_show", "No-show"


class AppointmentSource(models.TextChoices):
    CHAT = "chat", "Chat"
    SMS = "sms", "SMS"
    STAFF = "staff", "Staff"
    CRM = "crm", "CRM"


class CrmSyncStatus(models.TextChoices):
    PENDING = "pending", "Waiting to sync"
    SYNCING = "syncing", "Syncing"
    SYNCED = "synced", "In sync"
    FAILED = "failed", "Failed (will retry)"
    GAVE_UP = "gave_up", "Failed (gave up)"
    NOT_CONFIGURED = "not_configured", "No CRM connection"


class Appointment(BaseModel):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    lead = models.ForeignKey(
        "leads.Lead", on_delete=models.PROTECT, related_name="appointments"
    )
    location = models.ForeignKey(
        "locations.Location", on_delete=models.PROTECT, related_name="appointments"
    )
    service = models.ForeignKey(
        "locations.ServiceCatalogItem",
        on_delete=models.PROTECT,
        related_name="appointments",
    )
    bay = models.PositiveSmallIntegerField()
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    # The booked time as one range, for the exclusion constraint below.
    during = models.GeneratedField(
        expression=Func(F("starts_at"), F("ends_at"), function="tstzrange"),
        output_field=DateTimeRangeField(),
        db_persist=True,
    )
    status = models.CharField(
        max_length=12, choices=AppointmentStatus, default=AppointmentStatus.BOOKED
    )
    source = models.CharField(max_length=8, choices=AppointmentSource)
    price_cents = models.PositiveIntegerField(
        "price (cents)", help_text="The price quoted when booked."
    )
    notes = models.TextField(blank=True)
    is_additional = models.BooleanField(
        default=False, help_text="Booked by staff beside the lead's main appointment."
    )
    booked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=200, blank=True)
    crm_appointment_id = models.CharField(
        "CRM appointment id", max_length=100, blank=True
    )
    crm_sync_status = models.CharField(
        max_length=16, choices=CrmSyncStatus, default=CrmSyncStatus.PENDING
    )
    crm_sync_error = models.TextField(blank=True)
    crm_sync_attempts = models.PositiveSmallIntegerField(default=0)
    crm_synced_at = models.DateTimeField(null=True, blank=True)
    crm_next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("starts_at", "bay")
        constraints = [
            # One bay cannot hold two booked appointments at once; the database refuses it.
            ExclusionConstraint(
                name="appointments_no_double_booking",
                expressions=[
                    ("location", RangeOperators.EQUAL),
                    ("bay", RangeOperators.EQUAL),
                    ("during", RangeOperators.OVERLAPS),
                ],
                condition=Q(status="booked"),
                violation_error_message="That bay is taken at that time.",
            ),
            models.UniqueConstraint(
                fields=["lead"],
                condition=Q(status="booked", is_additional=False),
                name="appointments_one_active_per_lead",
                violation_error_message="This customer already has an appointment; move it or cancel it first.",
            ),
            models.CheckConstraint(
                condition=Q(starts_at__lt=F("ends_at")),
                name="appointments_starts_before_ends",
            ),
            models.CheckConstraint(
                condition=Q(bay__gte=1), name="appointments_bay_positive"
            ),
            models.CheckConstraint(
                condition=Q(status__in=AppointmentStatus.values),
                name="appointments_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(source__in=AppointmentSource.values),
                name="appointments_source_valid",
            ),
            models.CheckConstraint(
                condition=Q(crm_sync_status__in=CrmSyncStatus.values),
                name="appointments_sync_status_valid",
            ),
        ]
        indexes = [
            # serves availability: a location's booked appointments in a time window
            models.Index(
                fields=["location", "starts_at"],
                name="appointments_loc_start_idx",
                condition=Q(status="booked"),
            ),
            # serves the CRM sync retry job
            models.Index(
                fields=["crm_next_attempt_at"],
                name="appointments_sync_due_idx",
                condition=Q(crm_sync_status__in=["pending", "failed", "syncing"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service} for {self.lead} at {self.starts_at:%Y-%m-%d %H:%M} UTC"


class ScheduledKind(models.TextChoices):
    REMINDER = "reminder", "Reminder"
    REBOOKING = "rebooking", "Rebooking follow-up"


class ScheduledStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"


class ScheduledMessage(models.Model):
    """A reminder or rebooking message due at a time; sent through the gate by the dispatcher."""

    lead = models.ForeignKey(
        "leads.Lead", on_delete=models.CASCADE, related_name="scheduled_messages"
    )
    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="scheduled_messages"
    )
    kind = models.CharField(max_length=12, choices=ScheduledKind)
    channel = models.CharField(max_length=8, choices=Channel)
    due_at = models.DateTimeField()
    status = models.CharField(
        max_length=12, choices=ScheduledStatus, default=ScheduledStatus.SCHEDULED
    )
    outbound_message = models.OneToOneField(
        "messaging.OutboundMessage",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="scheduled_message",
    )
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("due_at",)
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=ScheduledKind.values),
                name="appointments_scheduled_kind_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=ScheduledStatus.values),
                name="appointments_scheduled_status_valid",
            ),
        ]
        indexes = [
            models.Index(
                fields=["due_at"],
                name="appointments_scheduled_due_idx",
                condition=Q(status="scheduled"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.lead} at {self.due_at:%Y-%m-%d %H:%M} UTC"
