"""Reads of brands and hosts."""

from __future__ import annotations

from django_tenants.utils import get_public_schema_name, schema_context

from tenants.models import Tenant


def tenant_list_active() -> list[Tenant]:
    """Every brand that background work should visit (the public schema excluded)."""
    with schema_context(get_public_schema_name()):
        return list(
            Tenant.objects.exclude(schema_name=get_public_schema_name()).filter(
                is_active=True
            )
        )


def tenant_get_by_slug(*, slug: str) -> Tenant | None:
    with schema_context(get_public_schema_name()):
        return (
            Tenant.objects.exclude(schema_name=get_public_schema_name())
            .filter(slug=slug)
            .first()
        )
