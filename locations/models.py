"""A brand's locations, their opening hours and closures, the service catalog and staff scopes."""

from __future__ import annotations

import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from leadorch.models import BaseModel
from leadorch.phones import E164_REGEX, PhoneNumberField


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ValidationError(
            f"{value!r} is not an IANA time zone such as America/Los_Angeles."
        ) from error


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class Location(BaseModel):
    """One franchise shop of the brand."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    crm_location_id = models.CharField(
        "CRM location id",
        max_length=100,
        blank=True,
        help_text="The shop's id in ShopMonkey.",
    )
    time_zone = models.CharField(
        max_length=64, default="America/Los_Angeles", validators=[validate_time_zone]
    )
    address_line1 = models.CharField("address", max_length=200, blank=True)
    address_line2 = models.CharField("address (line 2)", max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    region = models.CharField("state", max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(
        max_length=2, default="US", help_text="ISO 3166 code, e.g. US."
    )
    phone = PhoneNumberField()
    email = models.EmailField(blank=True)
    bays = models.PositiveSmallIntegerField(
        default=1, help_text="How many cars can be worked on at once."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(
                fields=["crm_location_id"],
                condition=~Q(crm_location_id=""),
                name="locations_location_crm_id_unique",
                violation_error_message="Another location has this CRM location id.",
            ),
            models.CheckConstraint(
                condition=Q(bays__gte=1),
                name="locations_location_bays_positive",
                violation_error_message="A location needs at least one bay.",
            ),
            models.CheckConstraint(
                condition=~Q(name=""),
                name="locations_location_name_not_blank",
                violation_error_message="A location needs a name.",
            ),
            models.CheckConstraint(
                condition=Q(phone="") | Q(phone__regex=E164_REGEX),
                name="locations_location_phone_e164",
                violation_error_message="Enter the phone number in a valid format.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    @property
    def address(self) -> str:
        street = ", ".join(
            part for part in (self.address_line1, self.address_line2) if part
        )
        locality = " ".join(part for part in (self.region, self.postal_code) if part)
        return ", ".join(part for part in (street, self.city, locality) if part)


class LocationHours(models.Model):
    """Regular opening hours of one weekday. A missing weekday counts as closed."""

    location = models.ForeignKey(
        Location, on_delete=models.CASCADE, related_name="hours"
    )
    weekday = models.PositiveSmallIntegerField(choices=Weekday)
    opens_at = models.TimeField(null=True, blank=True)
    closes_at = models.TimeField(null=True, blank=True)
    is_closed = models.BooleanField("closed", default=False)

    class Meta:
        ordering = ("location", "weekday")
        verbose_name = "opening hours"
        verbose_name_plural = "opening hours"
        constraints = [
            models.UniqueConstraint(
                fields=["location", "weekday"],
                name="locations_hours_one_per_weekday",
                violation_error_message="This weekday already has opening hours at this location.",
            ),
            models.CheckConstraint(
                condition=Q(weekday__gte=0, weekday__lte=6),
                name="locations_hours_weekday_valid",
                violation_error_message="Choose a weekday.",
            ),
            models.CheckConstraint(
                condition=Q(is_closed=True)
                | Q(
                    opens_at__isnull=False,
                    closes_at__isnull=False,
                    opens_at__lt=F("closes_at"),
                ),
                name="locations_hours_opens_before_closes",
                violation_error_message="Opening time must be before closing time (or mark the day closed).",
            ),
        ]

    def __str__(self) -> str:
        day = Weekday(self.weekday).label
        if self.is_closed:
            return f"{day}: closed"
        return f"{day}: {self.opens_at:%H:%M}-{self.closes_at:%H:%M}"


class Closure(BaseModel):
    """Days a location is closed outside its regular hours (holidays, training)."""

    location = models.ForeignKey(
        Location, on_delete=models.CASCADE, related_name="closures"
    )
    starts_on = models.DateField()
    ends_on = models.DateField(help_text="Last closed day (inclusive).")
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("location", "starts_on")
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_on__lte=F("ends_on")),
                name="locations_closure_starts_before_ends",
                violation_error_message="A closure must end on or after the day it starts.",
            ),
        ]
        indexes = [  # serves the availability lookup of closures overlapping a date range
            models.Index(
                fields=["location", "ends_on"], name="locations_closure_loc_end_idx"
            ),
        ]

    def __str__(self) -> str:
        if self.starts_on == self.ends_on:
            return f"{self.location}: closed {self.starts_on:%Y-%m-%d}"
        return f"{self.location}: closed {self.starts_on:%Y-%m-%d} to {self.ends_on:%Y-%m-%d}"


class ServiceCatalogItem(BaseModel):
    """A service the brand sells, with its brand-wide price and duration."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    code = models.SlugField(
        max_length=64,
        unique=True,
        help_text="A short, stable identifier, e.g. tint-sedan-ceramic.",
    )
    category = models.CharField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    price_cents = models.PositiveIntegerField("price (cents)")
    duration_minutes = models.PositiveIntegerField()
    is_active = models.BooleanField("active", default=True)

    class Meta:
        ordering = ("category", "name")
        verbose_name = "service"
        constraints = [
            models.CheckConstraint(
                condition=Q(price_cents__gt=0),
                name="locations_item_price_positive",
                violation_error_message="The price must be more than zero.",
            ),
            models.CheckConstraint(
                condition=Q(duration_minutes__gt=0, duration_minutes__lte=24 * 60),
                name="locations_item_duration_valid",
                violation_error_message="The duration must be between 1 minute and 24 hours.",
            ),
            models.CheckConstraint(
                condition=~Q(name="") & ~Q(category=""),
                name="locations_item_named",
                violation_error_message="A service needs a name and a category.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ServiceOverride(BaseModel):
    """A location's own price, duration or availability of a brand-wide service."""

    item = models.ForeignKey(
        ServiceCatalogItem, on_delete=models.CASCADE, related_name="overrides"
    )
    location = models.ForeignKey(
        Location, on_delete=models.CASCADE, related_name="service_overrides"
    )
    price_cents = models.PositiveIntegerField(
        "price (cents)", null=True, blank=True, help_text="Empty: the brand price."
    )
    duration_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: the brand duration."
    )
    is_available = models.BooleanField("offered here", default=True)

    class Meta:
        ordering = ("location", "item")
        verbose_name = "location override"
        constraints = [
            models.UniqueConstraint(
                fields=["item", "location"],
                name="locations_override_one_per_item_location",
                violation_error_message="This service already has an override at this location.",
            ),
            models.CheckConstraint(
                condition=Q(price_cents__isnull=True) | Q(price_cents__gt=0),
                name="locations_override_price_positive",
                violation_error_message="The price must be more than zero.",
            ),
            models.CheckConstraint(
                condition=Q(duration_minutes__isnull=True)
                | Q(duration_minutes__gt=0, duration_minutes__lte=24 * 60),
                name="locations_override_duration_valid",
                violation_error_message="The duration must be between 1 minute and 24 hours.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item} at {self.location}"


class StaffMembership(BaseModel):
    """What a staff user may see: one location per row, or the whole brand (no location)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    location = models.ForeignKey(
        Location,
        on_delete=models.CASCADE,
        related_name="memberships",
        null=True,
        blank=True,
        help_text="Empty: every location of the brand.",
    )

    class Meta:
        ordering = ("user", "location")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "location"],
                nulls_distinct=False,
                name="locations_membership_unique",
                violation_error_message="This user already has this access.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.location or 'all locations'}"
