"""Creating brands and their hosts."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django_tenants.utils import get_public_schema_name, schema_context

from leadorch.errors import ApplicationError
from tenants.models import Domain, OutboundMode, Tenant


def tenant_primary_host(*, slug: str) -> str:
    return f"{slug}.{settings.BASE_DOMAIN}"


def tenant_create(
    *,
    name: str,
    slug: str,
    domains: Iterable[str] = (),
    outbound_mode: str = OutboundMode.DISABLED,
) -> Tenant:
    """Create a brand: its schema (all tenant migrations applied) and its hosts.

    The brand answers at <slug>.<BASE_DOMAIN> plus any extra ``domains``.
    Raises ApplicationError with a readable message when the slug or a host is taken or invalid.
    """
    slug = slug.strip().lower()
    hosts = [
        tenant_primary_host(slug=slug),
        *(h.strip().lower() for h in domains if h.strip()),
    ]
    with schema_context(get_public_schema_name()):
        if Tenant.objects.filter(slug=slug).exists():
            raise ApplicationError(
                f"A brand with the slug {slug!r} exists already.", code="exists"
            )
        tenant = Tenant(
            name=name.strip(),
            slug=slug,
            schema_name=slug.replace("-", "_"),
            outbound_mode=outbound_mode,
        )
        try:
            tenant.full_clean()
        except ValidationError as error:
            raise ApplicationError(_validation_text(error), code="invalid") from error
        taken = sorted(
            Domain.objects.filter(domain__in=hosts).values_list("domain", flat=True)
        )
        if taken:
            raise ApplicationError(
                f"Host already in use: {', '.join(taken)}.", code="host_taken"
            )
        with transaction.atomic():
            tenant.save(
                verbosity=0
            )  # creates the schema and runs the tenant migrations
            for position, host in enumerate(dict.fromkeys(hosts)):
                domain = Domain(tenant=tenant, domain=host, is_primary=position == 0)
                domain.full_clean()
                domain.save()
    return tenant


def tenant_ensure_public(*, hosts: Iterable[str] | None = None) -> Tenant:
    """Make sure the public tenant (the platform admin) exists and answers at ``hosts``. Idempotent."""
    hosts = list(hosts if hosts is not None else settings.PLATFORM_HOSTS)
    with schema_context(get_public_schema_name()):
        tenant, _ = Tenant.objects.get_or_create(
            schema_name=get_public_schema_name(),
            defaults={"name": "Platform", "slug": "public"},
        )
        for position, host in enumerate(hosts):
            Domain.objects.get_or_create(
                domain=host.lower(),
                defaults={"tenant": tenant, "is_primary": position == 0},
            )
    return tenant


def tenant_add_domain(*, tenant: Tenant, host: str) -> Domain:
    """Route one more host to ``tenant``. Idempotent for a host it already has."""
    host = host.strip().lower()
    with schema_context(get_public_schema_name()):
        existing = Domain.objects.filter(domain=host).select_related("tenant").first()
        if existing is not None:
            if existing.tenant_id != tenant.pk:
                raise ApplicationError(
                    f"Host {host} belongs to {existing.tenant.name}.", code="host_taken"
                )
            return existing
        domain = Domain(
            tenant=tenant, domain=host, is_primary=not tenant.domains.exists()
        )
        domain.full_clean()
        domain.save()
        return domain


def _validation_text(error: ValidationError) -> str:
    if hasattr(error, "message_dict"):
        return "; ".join(
            f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items()
        )
    return " ".join(error.messages)
