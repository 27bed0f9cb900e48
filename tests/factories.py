"""Factories for tenant-schema models. Use them inside a tenant (the `tenant` fixture)."""

from __future__ import annotations

from datetime import time

import factory
from django.contrib.auth.models import User
from factory.django import DjangoModelFactory

from leads.models import Lead, LeadSource
from locations.models import (
    Closure,
    Location,
    LocationHours,
    ServiceCatalogItem,
    ServiceOverride,
    StaffMembership,
)


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True
    password = factory.django.Password("staff-pass")


class SuperUserFactory(UserFactory):
    username = factory.Sequence(lambda n: f"admin{n}")
    is_superuser = True


class LocationFactory(DjangoModelFactory):
    class Meta:
        model = Location

    name = factory.Sequence(lambda n: f"Store {n:03d}")
    crm_location_id = factory.Sequence(lambda n: f"loc-{n:04d}")
    time_zone = "America/Los_Angeles"
    address_line1 = factory.Faker("street_address")
    city = "San Diego"
    region = "CA"
    postal_code = "92111"
    phone = factory.Sequence(lambda n: f"+1619555{1000 + n % 9000:04d}")
    bays = 3


class LocationHoursFactory(DjangoModelFactory):
    class Meta:
        model = LocationHours

    location = factory.SubFactory(LocationFactory)
    weekday = 0
    opens_at = time(9)
    closes_at = time(18)


class ClosureFactory(DjangoModelFactory):
    class Meta:
        model = Closure

    location = factory.SubFactory(LocationFactory)
    starts_on = factory.Faker("date_this_year")
    ends_on = factory.LazyAttribute(lambda c: c.starts_on)
    reason = "Holiday"


class ServiceCatalogItemFactory(DjangoModelFactory):
    class Meta:
        model = ServiceCatalogItem

    code = factory.Sequence(lambda n: f"service-{n}")
    category = "Window tint"
    name = factory.Sequence(lambda n: f"Window tint package {n}")
    price_cents = 29900
    duration_minutes = 120


class ServiceOverrideFactory(DjangoModelFactory):
    class Meta:
        model = ServiceOverride

    item = factory.SubFactory(ServiceCatalogItemFactory)
    location = factory.SubFactory(LocationFactory)
    price_cents = 31900


class StaffMembershipFactory(DjangoModelFactory):
    class Meta:
        model = StaffMembership

    user = factory.SubFactory(UserFactory)
    location = factory.SubFactory(LocationFactory)


class LeadFactory(DjangoModelFactory):
    class Meta:
        model = Lead

    location = factory.SubFactory(LocationFactory)
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    phone = factory.Sequence(lambda n: f"+1858555{1000 + n % 9000:04d}")
    vehicle_year = 2021
    vehicle_make = "Toyota"
    vehicle_model = "Camry"
    source = LeadSource.WEBHOOK
    crm_order_id = factory.Sequence(lambda n: f"order-{n}")
