from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from tenants.models import Tenant
from tests.factories import LeadFactory, LocationFactory

# A Wednesday, 18:00 UTC: 10:00 in San Diego, inside everyone's window.
DAYTIME = datetime(2026, 11, 18, 18, 0, tzinfo=UTC)


def set_outbound_mode(tenant: Tenant, mode: str) -> None:
    with schema_context("public"):
        Tenant.objects.filter(pk=tenant.pk).update(outbound_mode=mode)
    connection.tenant.outbound_mode = mode


@pytest.fixture
def live(tenant, settings):
    settings.MESSAGING_BACKEND = "outbox"
    set_outbound_mode(tenant, "live")
    return tenant


@pytest.fixture
def lead(tenant):
    location = LocationFactory(
        time_zone="America/Los_Angeles", region="CA", phone="+16195550194"
    )
    return LeadFactory(
        location=location,
        phone="+16195550141",
        email="maria@example.com",
        ingested_at=DAYTIME,
    )


# The intake fixtures, for tests that run a lead from the webhook to its first messages.
from tests.leads.conftest import crm, shopmonkey, store  # noqa: E402, F401
