"""A brand's rows, users and sessions exist only at its own hosts and in its own schema."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from django_tenants.utils import schema_context, tenant_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leads.models import Lead
from locations.models import Location
from tests.conftest import PLATFORM_HOST, host_of
from tests.factories import LeadFactory, LocationFactory


def test_rows_of_one_brand_are_invisible_in_the_others_schema(test_tenants):
    alpha, bravo = test_tenants["alpha"], test_tenants["bravo"]
    with tenant_context(alpha):
        LeadFactory(first_name="Alpha customer")

    with tenant_context(bravo):
        assert not Lead.objects.filter(first_name="Alpha customer").exists()
        assert Location.objects.count() == 0
    with tenant_context(alpha):
        assert Lead.objects.filter(first_name="Alpha customer").count() == 1


def test_rows_of_one_brand_are_invisible_at_the_others_host(test_tenants):
    # given: each brand has an admin and a lead
    alpha, bravo = test_tenants["alpha"], test_tenants["bravo"]
    with tenant_context(alpha):
        alpha_lead = LeadFactory(first_name="Zelda", last_name="Alphaonly")
    with tenant_context(bravo):
        bravo_admin = User.objects.create_superuser("bravo-boss", password="x")
        LeadFactory(first_name="Yusuf", last_name="Bravoonly")
        client = Client(HTTP_HOST=host_of(bravo))
        client.force_login(bravo_admin)  # the session lives in the brand's schema

    # when
    listing = client.get("/admin/leads/lead/")
    by_url = client.get(f"/admin/leads/lead/{alpha_lead.pk}/change/")
    search = client.get("/admin/leads/lead/", {"q": "Alphaonly"})

    # then
    assert listing.status_code == 200
    assert "Bravoonly" in listing.content.decode()
    assert "Alphaonly" not in listing.content.decode()
    assert (
        by_url.status_code == 302
    )  # "does not exist" in this brand (pks are per schema)
    assert list(search.context["cl"].result_list) == []


def test_a_session_from_one_brand_is_not_valid_at_another(test_tenants):
    alpha, bravo = test_tenants["alpha"], test_tenants["bravo"]
    with tenant_context(alpha):
        alpha_admin = User.objects.create_superuser("alpha-boss", password="x")
        client = Client(HTTP_HOST=host_of(alpha))
        client.force_login(alpha_admin)
    assert client.get("/admin/").status_code == 200

    # The same cookie jar, at the other brand's host.
    response = client.get("/admin/", HTTP_HOST=host_of(bravo))

    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


def test_users_of_one_brand_cannot_log_in_at_another(test_tenants):
    alpha, bravo = test_tenants["alpha"], test_tenants["bravo"]
    with tenant_context(alpha):
        User.objects.create_superuser("alpha-only", password="secret-pass-1")
    client = Client(HTTP_HOST=host_of(bravo))

    response = client.post(
        "/admin/login/", {"username": "alpha-only", "password": "secret-pass-1"}
    )

    assert response.status_code == 200  # the form again, with an error
    assert "Please enter the correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_unknown_host_gets_plain_404(test_tenants):
    response = Client(HTTP_HOST="nobody.localhost").get("/admin/")

    assert response.status_code == 404
    body = response.content.decode()
    assert "No service answers at this address" in body
    assert "Traceback" not in body


def test_disallowed_host_gets_404_not_500(test_tenants):
    response = Client(HTTP_HOST="evil.example.org").get("/admin/")
    assert response.status_code in {400, 404}


def test_platform_admin_is_at_the_public_host_only(test_tenants):
    public = Client(HTTP_HOST=PLATFORM_HOST).get("/admin/login/")
    brand = Client(HTTP_HOST=host_of(test_tenants["alpha"])).get("/admin/login/")

    assert public.status_code == 200
    assert "Lead Orchestrator platform" in public.content.decode()
    assert brand.status_code == 200
    assert "Lead Orchestrator platform" not in brand.content.decode()
    # Brand models are not part of the platform admin, and brands are not managed from a brand's host.
    assert Client(HTTP_HOST=host_of(test_tenants["alpha"])).get(
        "/admin/tenants/tenant/"
    ).status_code in {302, 404}


def test_platform_admin_lists_brands(test_tenants, public_schema):
    root = User.objects.create_superuser("root", password="x")
    client = Client(HTTP_HOST=PLATFORM_HOST)
    client.force_login(root)

    response = client.get("/admin/tenants/tenant/")

    assert response.status_code == 200
    names = {tenant.name for tenant in response.context["cl"].result_list}
    assert {"Alpha Tint", "Bravo Glass"} <= names
    assert "Platform" not in names


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    placements=st.lists(
        st.tuples(
            st.sampled_from(["alpha", "bravo"]),
            st.text(alphabet="abcdefghij", min_size=3, max_size=8),
        ),
        max_size=10,
    )
)
def test_each_schema_holds_exactly_its_own_rows(test_tenants, placements):
    """Property: whatever rows are written to whichever brand, each brand's schema
    returns exactly the rows written to it, and its hosts serve no other brand's data."""
    with transaction.atomic():
        expected: dict[str, set[str]] = {"alpha": set(), "bravo": set()}
        for slug, name in placements:
            with tenant_context(test_tenants[slug]):
                LocationFactory(name=f"{slug}-{name}")
            expected[slug].add(f"{slug}-{name}")

        for slug, tenant in test_tenants.items():
            with tenant_context(tenant):
                assert (
                    set(Location.objects.values_list("name", flat=True))
                    == expected[slug]
                )
        with schema_context("public"):
            assert "locations_location" not in connection.introspection.table_names()
        transaction.set_rollback(True)


@pytest.mark.parametrize("path", ["/admin/", "/admin/leads/lead/", "/api/schema/"])
def test_brand_pages_need_a_brand_host(test_tenants, path):
    response = Client(HTTP_HOST=PLATFORM_HOST).get(path)
    assert response.status_code in {302, 404}
    assert b"leads" not in response.content.lower() or response.status_code == 302
