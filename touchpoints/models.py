"""The follow-up cadence: steps as data, one TouchPoint per lead and step, an enrollment per lead."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from leadorch.models import BaseModel
from messaging.models import Channel


class Cadence(BaseModel):
    """A brand's sequence of follow-up steps. New leads start the default one."""

    name = models.CharField(max_length=100)
    is_default = models.BooleanField(
        default=False, help_text="New leads start this cadence."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="touchpoints_cadence_one_default",
                violation_error_message="Another cadence is the default already.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CadenceStep(models.Model):
    """One touch: a channel, a delay from the lead's arrival, and a template."""

    cadence = models.ForeignKey(Cadence, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    channel = models.CharField(max_length=8, choices=Channel)
    delay_minutes = models.PositiveIntegerField(
        help_text="Minutes after the lead arrives (0: at once)."
    )
    subject = models.CharField(
        max_length=200, blank=True, help_text="Email subject (a template too)."
    )
    template = models.TextField(
        help_text="Django template. Variables: first_name, vehicle, location, location_phone, "
        "chat_link, brand, opt_out."
    )

    class Meta:
        ordering = ("cadence", "position")
        constraints = [
            models.UniqueConstraint(
                fields=["cadence", "position"],
                name="touchpoints_step_unique_position",
                violation_error_message="Two steps cannot share a position.",
            ),
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values),
                name="touchpoints_step_channel_valid",
            ),
            models.CheckConstraint(
                condition=Q(position__gte=1),
                name="touchpoints_step_position_positive",
                violation_error_message="Positions start at 1.",
            ),
            models.CheckConstraint(
                condition=~Q(template=""),
                name="touchpoints_step_has_template",
                violation_error_message="A step needs a message.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cadence} #{self.position} ({self.get_channel_display()}, +{self.delay_minutes} min)"

    def clean(self) -> None:
        """A template that does not render is refused when saved, not found out when sending."""
        from touchpoints.services import template_validate

        errors = {}
        for field in ("template", "subject"):
            try:
                template_validate(getattr(self, field))
            except ValidationError as error:
                errors[field] = error.messages
        if self.channel == Channel.EMAIL and not self.subject.strip():
            errors.setdefault("subject", []).append("An email step needs a subject.")
        if errors:
            raise ValidationError(errors)


class EnrollmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    STOPPED = "stopped", "Stopped"
    FINISHED = "finished", "Finished"


class StopReason(models.TextChoices):
    REPLIED = "replied", "The customer replied"
    CHATTED = "chatted", "The customer chatted"
    BOOKED = "booked", "An appointment was booked"
    OPTED_OUT = "opted_out", "The customer opted out"
    LEAD_LOST = "lead_lost", "The lead was marked lost"
    PAUSED = "paused", "Paused by staff"
    STAFF = "staff", "Stopped by staff"


class CadenceEnrollment(BaseModel):
    """A lead's place in a cadence: active, paused by staff, stopped (and why) or finished."""

    lead = models.OneToOneField(
        "leads.Lead", on_delete=models.CASCADE, related_name="cadence_enrollment"
    )
    cadence = models.ForeignKey(
        Cadence, on_delete=models.PROTECT, related_name="enrollments"
    )
    status = models.CharField(
        max_length=10, choices=EnrollmentStatus, default=EnrollmentStatus.ACTIVE
    )
    stop_reason = models.CharField(max_length=16, choices=StopReason, blank=True)
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=EnrollmentStatus.values),
                name="touchpoints_enrollment_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lead}: {self.get_status_display()}"


class TouchPointStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    CLAIMED = "claimed", "Claimed by a worker"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    RECORDED = "recorded", "Recorded (outbox)"
    BLOCKED = "blocked", "Blocked"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    NEEDS_REVIEW = "needs_review", "Needs review"


OPEN_TOUCHPOINT_STATUSES = (TouchPointStatus.SCHEDULED, TouchPointStatus.CLAIMED)


class TouchPoint(models.Model):
    """One step for one lead. At most one per lead and step, whatever the number of workers."""

    lead = models.ForeignKey(
        "leads.Lead", on_delete=models.CASCADE, related_name="touchpoints"
    )
    step = models.ForeignKey(
        CadenceStep, on_delete=models.PROTECT, related_name="touchpoints"
    )
    channel = models.CharField(max_length=8, choices=Channel)
    due_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=TouchPointStatus, default=TouchPointStatus.SCHEDULED
    )
    claimed_until = models.DateTimeField(null=True, blank=True)
    sending_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(
        max_length=200, blank=True, help_text="Why it was cancelled, blocked or held."
    )
    deferrals = models.PositiveSmallIntegerField(
        default=0, help_text="Times moved to the next allowed minute."
    )
    outbound_message = models.OneToOneField(
        "messaging.OutboundMessage",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="touchpoint",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("due_at", "pk")
        constraints = [
            models.UniqueConstraint(
                fields=["lead", "step"], name="touchpoints_one_per_lead_step"
            ),
            models.CheckConstraint(
                condition=Q(status__in=TouchPointStatus.values),
                name="touchpoints_status_valid",
            ),
        ]
        indexes = [
            # serves the claim of due rows: scheduled (or claimed with an expired lease), oldest first
            models.Index(
                fields=["due_at"],
                name="touchpoints_due_idx",
                condition=Q(status__in=["scheduled", "claimed"]),
            ),
            # serves the recovery of rows a crashed worker left in sending
            models.Index(
                fields=["sending_at"],
                name="touchpoints_sending_idx",
                condition=Q(status="sending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lead} step {self.step_id} ({self.get_status_display()})"
