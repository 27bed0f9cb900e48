from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from locations.models import LocationHours
from tests.factories import LeadFactory, LocationFactory, ServiceCatalogItemFactory
from tests.touchpoints.conftest import live, set_outbound_mode  # noqa: F401

# Monday 16 November 2026, 15:00 UTC = 07:00 in San Diego: booking opens at 09:00.
NOW = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)
# Tuesday 10:00 in San Diego.
TUESDAY_10 = datetime(2026, 11, 17, 18, 0, tzinfo=UTC)


@pytest.fixture
def store(tenant):
    location = LocationFactory(
        name="Store094",
        time_zone="America/Los_Angeles",
        region="CA",
        bays=3,
        crm_location_id="loc-94",
    )
    for weekday in range(5):
        LocationHours.objects.create(
            location=location, weekday=weekday, opens_at=time(9), closes_at=time(18)
        )
    LocationHours.objects.create(
        location=location, weekday=5, opens_at=time(9), closes_at=time(16)
    )
    LocationHours.objects.create(location=location, weekday=6, is_closed=True)
    return location


@pytest.fixture
def tint(tenant):
    return ServiceCatalogItemFactory(
        code="tint-sedan-ceramic",
        name="Ceramic tint, sedan",
        price_cents=44900,
        duration_minutes=120,
    )


@pytest.fixture
def customer(store):
    return LeadFactory(
        location=store,
        first_name="Maria",
        phone="+16195550141",
        email="maria@example.com",
    )
