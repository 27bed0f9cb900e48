from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context, tenant_context

from leads.models import CRMConnection, Lead, LeadStatus
from locations import selectors
from locations.models import (
    Location,
    LocationHours,
    ServiceCatalogItem,
    StaffMembership,
)
from messaging.models import WhitelistEntry
from tenants.models import Domain, Tenant


@pytest.fixture
def demo(transactional_db):
    yield
    connection.set_schema_to_public()
    Tenant.objects.filter(slug="tintworld").delete()
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS tintworld CASCADE")


def test_seeds_the_demo_brand_once(demo):
    # when: seeded twice
    first, second = StringIO(), StringIO()
    call_command("seed_demo", force=True, stdout=first)
    call_command("seed_demo", force=True, stdout=second)

    # then
    tenant = Tenant.objects.get(slug="tintworld")
    assert tenant.name == "Tint World"
    assert set(
        Domain.objects.filter(tenant=tenant).values_list("domain", flat=True)
    ) == {"tintworld.localhost", "localhost"}
    assert "Demo data already present; nothing changed." in second.getvalue()
    assert "brandadmin / tintworld-demo-pass" in second.getvalue()
    with tenant_context(tenant):
        store = Location.objects.get(name="Tint World - Store094")
        assert (store.city, store.time_zone, store.bays) == (
            "San Diego",
            "America/Los_Angeles",
            3,
        )
        hours = {
            h.weekday: (h.opens_at, h.closes_at, h.is_closed)
            for h in LocationHours.objects.filter(location=store)
        }
        assert {
            day: (str(o), str(c)) for day, (o, c, closed) in hours.items() if not closed
        } == {
            **dict.fromkeys(range(5), ("09:00:00", "18:00:00")),
            5: ("09:00:00", "16:00:00"),
        }
        assert hours[6][2] is True
        assert Location.objects.count() == 2
        assert ServiceCatalogItem.objects.count() >= 12
        assert set(ServiceCatalogItem.objects.values_list("category", flat=True)) >= {
            "Window tint",
            "Paint protection film",
            "Ceramic coating",
            "Windshield",
            "Tint removal",
        }
        other = Location.objects.exclude(pk=store.pk).get()
        prices_here = dict(
            selectors.service_list_for_location(location=store).values_list(
                "code", "effective_price_cents"
            )
        )
        prices_there = dict(
            selectors.service_list_for_location(location=other).values_list(
                "code", "effective_price_cents"
            )
        )
        assert prices_here["tint-sedan-ceramic"] == 44900
        assert prices_there["tint-sedan-ceramic"] == 47900
        assert "ppf-full-front" not in prices_there
        assert Lead.objects.count() == 6
        assert set(Lead.objects.values_list("status", flat=True)) >= {
            LeadStatus.NEW,
            LeadStatus.CONTACTED,
            LeadStatus.ENGAGED,
            LeadStatus.APPOINTMENT_SET,
            LeadStatus.LOST,
        }
        staff = User.objects.get(username="store094")
        assert list(
            StaffMembership.objects.filter(user=staff).values_list(
                "location__name", flat=True
            )
        ) == [store.name]
        assert User.objects.get(username="brandadmin").is_superuser
        connection = CRMConnection.objects.get()
        assert connection.is_demo_mode
        assert connection.webhook_secret.startswith("whsec_")
        assert connection.api_key == ""  # no polling of a real shop from the demo
        assert WhitelistEntry.objects.filter(email="jordan.rivera@example.com").exists()
    assert Tenant.objects.get(slug="tintworld").outbound_mode == "whitelist"
    with schema_context("public"):
        assert User.objects.get(username="platform").is_superuser


def test_demo_logins_work_at_their_hosts(demo):
    call_command("seed_demo", force=True, stdout=StringIO())

    brand = Client(HTTP_HOST="tintworld.localhost")
    login = brand.post(
        "/admin/login/", {"username": "store094", "password": "store094-demo-pass"}
    )
    assert login.status_code == 302
    listing = brand.get("/admin/leads/lead/")
    assert listing.status_code == 200
    assert {lead.location.name for lead in listing.context["cl"].result_list} == {
        "Tint World - Store094"
    }
    platform = Client(HTTP_HOST="platform.localhost")
    login = platform.post(
        "/admin/login/", {"username": "platform", "password": "platform-demo-pass"}
    )
    assert login.status_code == 302
    assert platform.get("/admin/tenants/tenant/").status_code == 200


def test_refuses_without_debug(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="runs only with DEBUG=1"):
        call_command("seed_demo")
