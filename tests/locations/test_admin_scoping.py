"""Location-limited staff see and touch only their locations' rows, wherever they look in the admin."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Permission, User
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leads.models import Lead, LeadStatus
from locations import selectors
from locations.models import Closure, Location, ServiceOverride, StaffMembership
from tests.factories import (
    ClosureFactory,
    LeadFactory,
    LocationFactory,
    ServiceOverrideFactory,
    StaffMembershipFactory,
    UserFactory,
)


@dataclass
class Scene:
    mine: Location
    theirs: Location
    staff: User


@pytest.fixture
def scene(tenant) -> Scene:
    mine, theirs = LocationFactory(name="Mine"), LocationFactory(name="Theirs")
    staff = UserFactory(username="limited")
    staff.user_permissions.set(
        Permission.objects.filter(
            codename__in=[
                f"{verb}_{model}"
                for verb in ("view", "add", "change", "delete")
                for model in (
                    "location",
                    "closure",
                    "serviceoverride",
                    "lead",
                    "locationhours",
                    "servicecatalogitem",
                )
            ]
        )
    )
    StaffMembershipFactory(user=staff, location=mine)
    return Scene(mine=mine, theirs=theirs, staff=staff)


@pytest.fixture
def staff_client(scene, tenant_client):
    tenant_client.force_login(scene.staff)
    return tenant_client


# (admin URL part, factory making a row at a location, how to read the location back)
SCOPED = [
    ("locations/location", lambda loc: loc),
    (
        "locations/closure",
        lambda loc: ClosureFactory(location=loc, reason=f"Closed {loc.name}"),
    ),
    ("locations/serviceoverride", lambda loc: ServiceOverrideFactory(location=loc)),
    (
        "leads/lead",
        lambda loc: LeadFactory(location=loc, first_name=f"Customer of {loc.name}"),
    ),
]


@pytest.mark.parametrize(("url", "make"), SCOPED, ids=[s[0] for s in SCOPED])
def test_changelist_lists_only_own_rows(scene, staff_client, url, make):
    # given
    own, other = make(scene.mine), make(scene.theirs)

    # when
    response = staff_client.get(f"/admin/{url}/")

    # then
    assert response.status_code == 200
    shown = {obj.pk for obj in response.context["cl"].result_list}
    assert shown == {own.pk}
    assert other.pk not in shown


@pytest.mark.parametrize(("url", "make"), SCOPED, ids=[s[0] for s in SCOPED])
def test_other_locations_rows_cannot_be_opened_by_url(scene, staff_client, url, make):
    own, other = make(scene.mine), make(scene.theirs)

    assert staff_client.get(f"/admin/{url}/{own.pk}/change/").status_code == 200
    for view in ("change", "delete", "history"):
        response = staff_client.get(f"/admin/{url}/{other.pk}/{view}/")
        # A row outside the queryset "does not exist" (a redirect to the index);
        # a view the user may not use at all is forbidden before any lookup.
        refused = response.status_code == 403 or (
            response.status_code == 302 and response.url == "/admin/"
        )
        assert refused, (view, response.status_code)
        assert str(other) not in response.content.decode()


@pytest.mark.parametrize(("url", "make"), SCOPED[1:], ids=[s[0] for s in SCOPED[1:]])
def test_other_locations_rows_cannot_be_deleted_by_post(scene, staff_client, url, make):
    other = make(scene.theirs)
    model = type(other)

    staff_client.post(f"/admin/{url}/{other.pk}/delete/", {"post": "yes"})
    staff_client.post(
        f"/admin/{url}/",
        {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"},
    )

    assert model.objects.filter(pk=other.pk).exists()


def test_bulk_action_skips_other_locations_rows(scene, staff_client):
    # given
    own = LeadFactory(location=scene.mine)
    other = LeadFactory(location=scene.theirs)

    # when
    response = staff_client.post(
        "/admin/leads/lead/",
        {
            "action": "mark_lost",
            "_selected_action": [own.pk, other.pk],
            "apply": "1",
            "reason": "No answer",
        },
    )

    # then
    assert response.status_code == 302
    own.refresh_from_db()
    other.refresh_from_db()
    assert own.status == LeadStatus.LOST
    assert other.status == LeadStatus.NEW


def test_add_form_offers_only_own_locations(scene, staff_client):
    response = staff_client.get("/admin/leads/lead/add/")

    choices = {
        choice.pk
        for choice in response.context["adminform"].form.fields["location"].queryset
    }
    assert choices == {scene.mine.pk}


def test_cannot_create_a_row_at_another_location(scene, staff_client):
    # when
    response = staff_client.post(
        "/admin/leads/lead/add/",
        {
            "location": scene.theirs.pk,
            "first_name": "Sneaky",
            "email": "sneaky@example.com",
            "source": "staff",
            "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "0",
        },
    )

    # then
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Lead.objects.filter(first_name="Sneaky").exists()


def test_cannot_move_own_row_to_another_location(scene, staff_client):
    closure = ClosureFactory(location=scene.mine)

    response = staff_client.post(
        f"/admin/locations/closure/{closure.pk}/change/",
        {
            "location": scene.theirs.pk,
            "starts_on": "2026-12-24",
            "ends_on": "2026-12-26",
            "reason": "Holidays",
        },
    )

    assert response.status_code == 200
    closure.refresh_from_db()
    assert closure.location_id == scene.mine.pk


def test_location_staff_cannot_manage_memberships_or_the_catalog(scene, staff_client):
    assert staff_client.get("/admin/locations/staffmembership/").status_code == 403
    response = staff_client.get("/admin/locations/servicecatalogitem/add/")
    assert response.status_code == 403


def test_brand_wide_membership_sees_everything(scene, tenant_client):
    boss = UserFactory(username="regional")
    boss.user_permissions.set(Permission.objects.filter(codename="view_lead"))
    StaffMembership.objects.create(user=boss, location=None)
    leads = {LeadFactory(location=scene.mine).pk, LeadFactory(location=scene.theirs).pk}
    tenant_client.force_login(boss)

    response = tenant_client.get("/admin/leads/lead/")

    assert {obj.pk for obj in response.context["cl"].result_list} == leads


def test_staff_without_membership_sees_nothing(scene, tenant_client):
    loner = UserFactory(username="loner")
    loner.user_permissions.set(Permission.objects.filter(codename="view_lead"))
    LeadFactory(location=scene.mine)
    tenant_client.force_login(loner)

    response = tenant_client.get("/admin/leads/lead/")

    assert list(response.context["cl"].result_list) == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    memberships=st.sets(st.integers(min_value=0, max_value=4), max_size=5),
    brand_wide=st.booleans(),
    rows=st.lists(st.integers(min_value=0, max_value=4), max_size=12),
)
def test_visible_rows_are_exactly_those_of_the_memberships(
    tenant, memberships, brand_wide, rows
):
    """Property: for any memberships and any spread of rows, a user sees exactly
    the rows of their locations (all of them when brand-wide)."""
    with transaction.atomic():
        locations = [LocationFactory() for _ in range(5)]
        user = UserFactory()
        for index in memberships:
            StaffMembership.objects.create(user=user, location=locations[index])
        if brand_wide:
            StaffMembership.objects.create(user=user, location=None)
        closures = [ClosureFactory(location=locations[index]) for index in rows]

        visible = set(
            selectors.scope_to_user(
                Closure.objects.all(),
                user=User.objects.get(pk=user.pk),
                location_path="location",
            )
        )

        allowed = set(range(5)) if brand_wide else memberships
        assert visible == {
            c for c, index in zip(closures, rows, strict=True) if index in allowed
        }
        transaction.set_rollback(True)


def test_overrides_inline_on_catalog_item_is_scoped(scene, tenant_client):
    """The location staff's view of a brand item shows only their own location's override."""
    own = ServiceOverrideFactory(location=scene.mine)
    ServiceOverrideFactory(item=own.item, location=scene.theirs)
    tenant_client.force_login(scene.staff)

    response = tenant_client.get(
        f"/admin/locations/servicecatalogitem/{own.item.pk}/change/"
    )

    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert {form.instance.pk for form in formset.forms if form.instance.pk} == {own.pk}
    assert ServiceOverride.objects.filter(item=own.item).count() == 2


@pytest.mark.parametrize(
    "url",
    [
        "leads/lead",
        "locations/closure",
        "locations/serviceoverride",
        "messaging/outboundmessage",
    ],
)
def test_list_filters_do_not_name_other_locations(scene, staff_client, url):
    LeadFactory(location=scene.mine)
    ClosureFactory(location=scene.mine)
    ServiceOverrideFactory(location=scene.mine)
    scene.staff.user_permissions.add(
        *Permission.objects.filter(codename="view_outboundmessage")
    )

    response = staff_client.get(f"/admin/{url}/")

    assert response.status_code == 200
    assert "Theirs" not in response.content.decode()
