"""Leads: customers who asked for a quote, and the history of what happened to them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from leadorch.crypto import EncryptedTextField
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


class CRMProvider(models.TextChoices):
    SHOPMONKEY = "shopmonkey", "ShopMonkey"


def default_demo_email_patterns() -> str:
    return "*@example.com"


def default_demo_phone_patterns() -> str:
    return "+1555555*"


class CRMConnection(BaseModel):
    """A brand's link to its shop software: credentials, the website-lead rule, polling state."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, default="ShopMonkey")
    provider = models.CharField(
        max_length=20, choices=CRMProvider, default=CRMProvider.SHOPMONKEY
    )
    api_key = EncryptedTextField(
        "API key", help_text="Stored encrypted. Leave empty to keep the current key."
    )
    webhook_secret = EncryptedTextField(
        help_text="The webhook's signing secret (whsec_...). Stored encrypted. Leave empty to keep the current one."
    )
    base_url = models.URLField(
        "API base URL",
        blank=True,
        help_text="Empty: the public API, or SHOPMONKEY_BASE_URL when set.",
    )
    lead_workflow_status_id = models.CharField(
        "lead workflow column id",
        max_length=100,
        blank=True,
        help_text="The board column new website quotes land in. Empty: any column.",
    )
    lead_name_prefix = models.CharField(
        max_length=100,
        default="New Quote",
        blank=True,
        help_text="Website quotes are named with this prefix.",
    )
    is_demo_mode = models.BooleanField(
        "demo mode",
        default=False,
        help_text="Ingest only orders whose customer email or phone matches the demo patterns.",
    )
    demo_email_patterns = models.TextField(
        default=default_demo_email_patterns,
        blank=True,
        help_text="One pattern per line; * matches anything.",
    )
    demo_phone_patterns = models.TextField(
        default=default_demo_phone_patterns,
        blank=True,
        help_text="One pattern per line, E.164; * matches anything.",
    )
    is_active = models.BooleanField(default=True)
    poll_enabled = models.BooleanField(
        default=True, help_text="Poll for orders as a backup to webhooks."
    )
    poll_cursor = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Orders updated since this time are polled next.",
    )
    next_poll_at = models.DateTimeField(null=True, blank=True, editable=False)
    poll_locked_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_polled_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_poll_error = models.TextField(blank=True, editable=False)

    class Meta:
        verbose_name = "CRM connection"
        constraints = [
            models.CheckConstraint(
                condition=Q(provider__in=CRMProvider.values),
                name="leads_crm_provider_valid",
            ),
        ]
        indexes = [  # serves the dispatcher's due-poll claim
            models.Index(
                fields=["next_poll_at"],
                name="leads_crm_next_poll_idx",
                condition=Q(is_active=True, poll_enabled=True),
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Lead(BaseModel):
    """A customer's quote request at one location, from first sight to booked work."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    location = models.ForeignKey(
        "locations.Location", on_delete=models.PROTECT, related_name="leads"
    )
    crm_connection = models.ForeignKey(
        CRMConnection,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="leads",
        editable=False,
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
            # One lead per CRM order, however many webhooks, polls and backfills see it.
            models.UniqueConstraint(
                fields=["crm_connection", "crm_order_id"],
                condition=Q(crm_connection__isnull=False),
                name="leads_lead_one_per_crm_order",
                violation_error_message="A lead for this CRM order exists already.",
            ),
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


class DeliveryStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSING = "processing", "Processing"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """The inbox: every signed webhook delivery, stored before it is acknowledged."""

    connection = models.ForeignKey(
        CRMConnection, on_delete=models.CASCADE, related_name="deliveries"
    )
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    webhook_id = models.CharField(max_length=200, blank=True)
    attempt = models.PositiveIntegerField(null=True, blank=True)
    operation = models.CharField(max_length=16, blank=True)
    table = models.CharField(max_length=64, blank=True)
    record_id = models.CharField(max_length=100, blank=True)
    record_version = models.CharField(max_length=100, blank=True)
    body = models.TextField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus, default=DeliveryStatus.RECEIVED
    )
    processed_at = models.DateTimeField(null=True, blank=True)
    result = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    tries = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ("-received_at", "-pk")
        constraints = [
            # webhook-id changes on every attempt; the record's version does not.
            models.UniqueConstraint(
                fields=["connection", "table", "record_id", "record_version"],
                condition=~Q(record_id=""),
                name="leads_delivery_one_per_record_version",
            ),
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values),
                name="leads_delivery_status_valid",
            ),
        ]
        indexes = [  # serves the re-queue of deliveries a crash or an API failure left unprocessed
            models.Index(
                fields=["received_at"],
                name="leads_delivery_pending_idx",
                condition=Q(status__in=["received", "processing", "failed"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.table} {self.operation} {self.record_id}"


class IgnoreReason(models.TextChoices):
    UNMAPPED_LOCATION = "unmapped_location", "CRM location not mapped to a location"
    NO_CONTACT = "no_contact", "No usable email or phone"
    DEMO_MODE = "demo_mode", "Filtered out by demo mode"


class IgnoredOrder(models.Model):
    """An order that looked like a lead but was not ingested, and why. Updated each time it is seen."""

    connection = models.ForeignKey(
        CRMConnection, on_delete=models.CASCADE, related_name="ignored_orders"
    )
    crm_order_id = models.CharField("CRM order id", max_length=100)
    crm_order_number = models.CharField(max_length=50, blank=True)
    crm_location_id = models.CharField("CRM location id", max_length=100, blank=True)
    reason = models.CharField(max_length=32, choices=IgnoreReason)
    detail = models.CharField(max_length=300, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    times_seen = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ("-last_seen_at",)
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "crm_order_id"],
                name="leads_ignored_one_per_order",
            ),
            models.CheckConstraint(
                condition=Q(reason__in=IgnoreReason.values),
                name="leads_ignored_reason_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Order {self.crm_order_number or self.crm_order_id}: {self.get_reason_display()}"


class JobKind(models.TextChoices):
    POLL = "poll", "Poll"
    BACKFILL = "backfill", "Backfill"


class JobStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    INTERRUPTED = "interrupted", "Interrupted"


class JobExecution(models.Model):
    """One run of a poll or a backfill, with what it saw and did."""

    connection = models.ForeignKey(
        CRMConnection, on_delete=models.CASCADE, related_name="job_executions"
    )
    kind = models.CharField(max_length=16, choices=JobKind)
    status = models.CharField(
        max_length=16, choices=JobStatus, default=JobStatus.RUNNING
    )
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    is_dry_run = models.BooleanField(default=False)
    params = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(
        default=dict, blank=True, help_text="Where a resumed run picks up."
    )
    pages = models.PositiveIntegerField(default=0)
    orders_seen = models.PositiveIntegerField(default=0)
    leads_created = models.PositiveIntegerField(default=0)
    leads_updated = models.PositiveIntegerField(default=0)
    orders_ignored = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    error_detail = models.TextField(blank=True)
    cursor_before = models.DateTimeField(null=True, blank=True)
    cursor_after = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-started_at", "-pk")
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=JobKind.values), name="leads_job_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="leads_job_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.started_at:%Y-%m-%d %H:%M:%S} ({self.get_status_display()})"
