"""Brands (tenants) and their host names. Public schema."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django_tenants.models import DomainMixin, TenantMixin

from leadorch.models import BaseModel

SLUG_PATTERN = r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$"


class OutboundMode(models.TextChoices):
    DISABLED = "disabled", "Disabled: nothing is sent"
    WHITELIST = "whitelist", "Whitelist: only to whitelisted recipients"
    LIVE = "live", "Live: to every customer the rules allow"


class Tenant(TenantMixin, BaseModel):
    """A franchise brand. Its data lives in its own PostgreSQL schema."""

    name = models.CharField(max_length=200)
    slug = models.CharField(
        max_length=42,
        unique=True,
        validators=[
            RegexValidator(
                SLUG_PATTERN,
                "Use 3-42 lowercase letters, digits and hyphens, starting with a letter.",
            )
        ],
        help_text="Names the brand's host: <slug>.<base domain>.",
    )
    outbound_mode = models.CharField(
        max_length=16, choices=OutboundMode, default=OutboundMode.DISABLED
    )
    is_active = models.BooleanField(default=True)
    ai_daily_spend_cap = models.DecimalField(
        "AI daily spend cap (USD)",
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Past this much AI spend in a day (UTC) the brand's chats use the "
        "offline assistant. Blank: the platform default (AI_DAILY_SPEND_CAP_USD); 0 "
        "switches the AI providers off.",
    )

    auto_create_schema = True
    auto_drop_schema = False

    class Meta:
        ordering = ("name",)
        constraints = [
            models.CheckConstraint(
                condition=Q(outbound_mode__in=OutboundMode.values),
                name="tenants_tenant_outbound_mode_valid",
                violation_error_message="Choose an outbound mode: disabled, whitelist or live.",
            ),
            models.CheckConstraint(
                condition=Q(slug__regex=SLUG_PATTERN),
                name="tenants_tenant_slug_format",
                violation_error_message="Use 3-42 lowercase letters, digits and hyphens, starting with a letter.",
            ),
            models.CheckConstraint(
                condition=~Q(name=""),
                name="tenants_tenant_name_not_blank",
                violation_error_message="A brand needs a name.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.schema_name != "public" and self.slug in settings.RESERVED_TENANT_SLUGS:
            raise ValidationError(
                {
                    "slug": f"The slug {self.slug!r} is reserved for the platform; choose another."
                }
            )

    @property
    def is_public(self) -> bool:
        return self.schema_name == "public"


class Domain(DomainMixin):
    """A host name that routes to a tenant."""

    class Meta:
        ordering = ("domain",)

    def __str__(self) -> str:
        return self.domain
