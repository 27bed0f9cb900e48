"""The database itself refuses bad hours, prices, durations and duplicates; the admin explains why."""

from datetime import time

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from locations.models import LocationHours, ServiceCatalogItem, ServiceOverride
from tests.factories import (
    LocationFactory,
    LocationHoursFactory,
    ServiceCatalogItemFactory,
    ServiceOverrideFactory,
)


def _refused(create) -> bool:
    try:
        with transaction.atomic():
            create()
    except IntegrityError:
        return True
    return False


@pytest.mark.parametrize(
    ("opens", "closes", "closed"),
    [
        (time(18), time(9), False),  # closes before it opens
        (time(9), time(9), False),  # opens and closes at once
        (None, time(18), False),  # no opening time on an open day
        (time(9), None, False),
    ],
)
def test_rejects_bad_hours(tenant, opens, closes, closed):
    location = LocationFactory()
    assert _refused(
        lambda: LocationHours.objects.create(
            location=location,
            weekday=0,
            opens_at=opens,
            closes_at=closes,
            is_closed=closed,
        )
    )
    assert not LocationHours.objects.filter(location=location).exists()


def test_closed_day_needs_no_times(tenant):
    location = LocationFactory()
    LocationHours.objects.create(location=location, weekday=6, is_closed=True)
    assert LocationHours.objects.get(location=location).is_closed


def test_rejects_second_row_for_a_weekday(tenant):
    hours = LocationHoursFactory(weekday=2)
    assert _refused(lambda: LocationHoursFactory(location=hours.location, weekday=2))
    assert LocationHours.objects.filter(location=hours.location).count() == 1


def test_rejects_weekday_out_of_range(tenant):
    assert _refused(lambda: LocationHoursFactory(weekday=7))


@pytest.mark.parametrize("price", [0])
def test_rejects_non_positive_price(tenant, price):
    assert _refused(lambda: ServiceCatalogItemFactory(price_cents=price))
    assert not ServiceCatalogItem.objects.exists()


@pytest.mark.parametrize("minutes", [0, 24 * 60 + 1])
def test_rejects_bad_duration(tenant, minutes):
    assert _refused(lambda: ServiceCatalogItemFactory(duration_minutes=minutes))
    assert not ServiceCatalogItem.objects.exists()


@pytest.mark.parametrize("field", ["price_cents", "duration_minutes"])
def test_rejects_zero_override(tenant, field):
    assert _refused(lambda: ServiceOverrideFactory(**{field: 0}))
    assert not ServiceOverride.objects.exists()


def test_rejects_second_override_for_item_and_location(tenant):
    override = ServiceOverrideFactory()
    assert _refused(
        lambda: ServiceOverrideFactory(item=override.item, location=override.location)
    )


def test_rejects_zero_bays_and_bad_phone(tenant):
    assert _refused(lambda: LocationFactory(bays=0))
    assert _refused(lambda: LocationFactory(phone="619-555-0100"))


def test_rejects_duplicate_crm_location_id_but_allows_blank(tenant):
    LocationFactory(crm_location_id="store094")
    assert _refused(lambda: LocationFactory(crm_location_id="store094"))
    LocationFactory(crm_location_id="")
    LocationFactory(crm_location_id="")


def _hours_formset(location, rows):
    data = {
        "hours-TOTAL_FORMS": str(len(rows)),
        "hours-INITIAL_FORMS": "0",
        "hours-MIN_NUM_FORMS": "0",
        "hours-MAX_NUM_FORMS": "7",
        "closures-TOTAL_FORMS": "0",
        "closures-INITIAL_FORMS": "0",
        "service_overrides-TOTAL_FORMS": "0",
        "service_overrides-INITIAL_FORMS": "0",
    }
    for index, (weekday, opens, closes) in enumerate(rows):
        data[f"hours-{index}-weekday"] = str(weekday)
        data[f"hours-{index}-opens_at"] = opens
        data[f"hours-{index}-closes_at"] = closes
        data[f"hours-{index}-location"] = str(location.pk)
    for field in (
        "name",
        "crm_location_id",
        "time_zone",
        "address_line1",
        "city",
        "region",
        "postal_code",
        "country",
        "phone",
        "email",
        "bays",
    ):
        value = getattr(location, field)
        data[field] = "" if value is None else str(value)
    data["is_active"] = "on"
    return data


def test_admin_shows_readable_error_for_bad_hours(tenant, tenant_client):
    # given
    admin_user = User.objects.create_superuser("boss", password="x")
    tenant_client.force_login(admin_user)
    location = LocationFactory()

    # when
    response = tenant_client.post(
        f"/admin/locations/location/{location.pk}/change/",
        _hours_formset(location, [(0, "18:00", "09:00")]),
    )

    # then
    assert response.status_code == 200
    assert "Opening time must be before closing time" in response.content.decode()
    assert not LocationHours.objects.filter(location=location).exists()


def test_admin_shows_readable_error_for_duplicate_weekday(tenant, tenant_client):
    admin_user = User.objects.create_superuser("boss", password="x")
    tenant_client.force_login(admin_user)
    location = LocationFactory()

    response = tenant_client.post(
        f"/admin/locations/location/{location.pk}/change/",
        _hours_formset(location, [(0, "09:00", "18:00"), (0, "10:00", "17:00")]),
    )

    assert response.status_code == 200
    assert "Please correct the duplicate data" in response.content.decode()
    assert not LocationHours.objects.filter(location=location).exists()


def test_admin_shows_readable_error_for_zero_price(tenant, tenant_client):
    admin_user = User.objects.create_superuser("boss", password="x")
    tenant_client.force_login(admin_user)

    response = tenant_client.post(
        "/admin/locations/servicecatalogitem/add/",
        {
            "code": "tint-free",
            "category": "Window tint",
            "name": "Free tint",
            "price_cents": "0",
            "duration_minutes": "60",
            "is_active": "on",
            "overrides-TOTAL_FORMS": "0",
            "overrides-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 200
    assert "The price must be more than zero." in response.content.decode()
    assert not ServiceCatalogItem.objects.exists()
