"""Shared by the intake commands: turn --tenant SLUG into brands, with readable errors."""

from __future__ import annotations

from django.core.management.base import CommandError

from tenants.models import Tenant
from tenants.selectors import tenant_get_by_slug, tenant_list_active


def tenants_for(slug: str | None) -> list[Tenant]:
    if not slug:
        return tenant_list_active()
    tenant = tenant_get_by_slug(slug=slug)
    if tenant is None:
        raise CommandError(f"No brand has the slug {slug!r}.")
    return [tenant]
