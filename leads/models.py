"""Leads: customers who asked for a quote, and the history of what happened to them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from leadorch.models import BaseModel
from leadorch.phones import E164_REGEX, PhoneNumberField


class LeadStatus(models.TextChoices):
    NEW = "new", "New"
    CONTACTED = "contacted", "Contacted"
    ENGAGED = "engaged", "Engaged"
    QUALIFIED = "qualified", "Qualified"
    APPOINTMENT_SET = "appointment_set", "Appointment set"
    COMPLETED = "completed", "Completed"
    LOST = "lost", "Lost"


OPEN_STATUSES = frozenset(
    {
        LeadStatus.NEW,
        LeadStatus.CONTACTED,
        LeadStatus.ENGAGED,
        LeadStatus.QUALIFIED,
        LeadStatus.APPOINTMENT_SET,
    }
)


class LeadSource(models.TextChoices):
    WEBHOOK = "webhook", "CRM webhook"
    POLL = "poll", "CRM polling"
    BACKFILL = "backfill", "CRM backfill"
    STAFF = "staff", "Entered by staff"
    DEMO = "demo", "Demo data"


class Lead(BaseModel):
    """A customer's quote request at one location, from first sight to booked work."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    location = models.ForeignKey(
        "locations.Location", on_delete=models.PROTECT, related_name="leads"
    )
    crm_order_id = models.CharField("CRM order id", max_length=100, blank=True)
    crm_customer_id = models.CharField("CRM customer id", max_length=100, blank=True)
    crm_vehicle_id = models.CharField("CRM vehicle id", max_length=100, blank=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(blank=True)
    phone = PhoneNumberField(help_text="Stored in E.164, e.g. +16195550134.")
    vehicle_year = models.PositiveSmallIntegerField(null=True, blank=True)
    vehicle_make = models.CharField(max_length=60, blank=True)
    vehicle_model = models.CharField(max_length=60, blank=True)
    source = models.CharField(
        max_length=16, choices=LeadSource, default=LeadSource.STAFF
    )
    status = models.CharField(
        max_length=20, choices=LeadStatus, default=LeadStatus.NEW, editable=False
    )
    crm_created_at = models.DateTimeField("created in CRM", null=True, blank=True)
    ingested_at = models.DateTimeField(null=True, blank=True)
    first_contacted_at = models.DateTimeField(null=True, blank=True, editable=False)
    engaged_at = models.DateTimeField(null=True, blank=True, editable=False)
    qualified_at = models.DateTimeField(null=True, blank=True, editable=False)
    booked_at = models.DateTimeField(null=True, blank=True, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True, editable=False)
    lost_at = models.DateTimeField(null=True, blank=True, editable=False)
    lost_reason = models.CharField(max_length=200, blank=True, editable=False)

    class Meta:
        ordering = ("-created_at", "-pk")
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=LeadStatus.values),
                name="leads_lead_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(source__in=LeadSource.values),
                name="leads_lead_source_valid",
            ),
            models.CheckConstraint(
                condition=Q(phone="") | Q(phone__regex=E164_REGEX),
                name="leads_lead_phone_e164",
                violation_error_message="Enter the phone number in a valid format.",
            ),
            models.CheckConstraint(
                condition=~Q(email="") | ~Q(phone=""),
                name="leads_lead_has_contact",
                violation_error_message="A lead needs an email address or a phone number.",
            ),
            models.CheckConstraint(
                condition=Q(vehicle_year__isnull=True)
                | Q(vehicle_year__gte=1900, vehicle_year__lte=2100),
                name="leads_lead_vehicle_year_valid",
                violation_error_message="Enter a vehicle year between 1900 and 2100.",
            ),
        ]
        indexes = [
            # serves the admin changelist filtered by location and status, newest first
            models.Index(
                fields=["location", "status", "-created_at"],
                name="leads_lead_loc_status_idx",
            ),
            # serves recipient lookups (inbound SMS, opt-outs, whitelist checks)
            models.Index(
                fields=["phone"], name="leads_lead_phone_idx", condition=~Q(phone="")
            ),
            models.Index(
                fields=["email"], name="leads_lead_email_idx", condition=~Q(email="")
            ),
        ]

    def __str__(self) -> str:
        return self.full_name or self.email or self.phone or f"Lead {self.pk}"

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @property
    def vehicle(self) -> str:
        return " ".join(
            str(part)
            for part in (self.vehicle_year, self.vehicle_make, self.vehicle_model)
            if part
        )

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class LeadEventKind(models.TextChoices):
    CREATED = "created", "Created"
    STATUS_CHANGED = "status_changed", "Status changed"
    NOTE = "note", "Note"


class LeadEvent(models.Model):
    """One entry of a lead's history. Written only by leads.services."""

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=LeadEventKind)
    from_status = models.CharField(max_length=20, choices=LeadStatus, blank=True)
    to_status = models.CharField(max_length=20, choices=LeadStatus, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    message = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ("created_at", "pk")
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=LeadEventKind.values),
                name="leads_event_kind_valid",
            ),
            models.CheckConstraint(
                condition=~Q(kind=LeadEventKind.STATUS_CHANGED)
                | (~Q(to_status="") & ~Q(from_status=F("to_status"))),
                name="leads_event_status_change_moves",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == LeadEventKind.STATUS_CHANGED:
            return f"{self.get_from_status_display()} → {self.get_to_status_display()}"
        return self.get_kind_display()
