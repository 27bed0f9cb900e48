"""Switching a brand's outbound mode: confirmation for live, an audit entry for every switch."""

from __future__ import annotations

from django.contrib.auth.models import Permission, User
from django_tenants.utils import schema_context

from messaging.models import OutboundModeChange
from tenants.models import Tenant
from tests.factories import StaffMembershipFactory, UserFactory

URL = "/admin/messaging/messagingpolicy/outbound-mode/"


def _mode(tenant) -> str:
    with schema_context("public"):
        return Tenant.objects.get(pk=tenant.pk).outbound_mode


def test_going_live_asks_for_confirmation(tenant, tenant_client):
    boss = User.objects.create_superuser("boss", password="x")
    tenant_client.force_login(boss)

    refused = tenant_client.post(URL, {"mode": "live", "note": "launch"})

    assert refused.status_code == 200
    assert (
        "Confirm before sending to every customer the rules allow."
        in refused.content.decode()
    )
    assert _mode(tenant) == "disabled"
    assert not OutboundModeChange.objects.exists()

    accepted = tenant_client.post(
        URL, {"mode": "live", "confirm": "on", "note": "launch"}
    )

    assert accepted.status_code == 302
    assert _mode(tenant) == "live"
    change = OutboundModeChange.objects.get()
    assert (change.from_mode, change.to_mode, change.actor, change.note) == (
        "disabled",
        "live",
        boss,
        "launch",
    )


def test_every_switch_is_logged(tenant, tenant_client):
    tenant_client.force_login(User.objects.create_superuser("boss", password="x"))

    tenant_client.post(URL, {"mode": "whitelist"})
    tenant_client.post(URL, {"mode": "disabled"})

    assert list(
        OutboundModeChange.objects.order_by("changed_at").values_list(
            "from_mode", "to_mode"
        )
    ) == [
        ("disabled", "whitelist"),
        ("whitelist", "disabled"),
    ]
    page = tenant_client.get(URL).content.decode()
    assert "Disabled: nothing is sent" in page


def test_location_staff_cannot_switch(tenant, tenant_client):
    staff = UserFactory()
    staff.user_permissions.set(
        Permission.objects.filter(
            codename__in=["change_messagingpolicy", "view_messagingpolicy"]
        )
    )
    StaffMembershipFactory(user=staff)
    tenant_client.force_login(staff)

    response = tenant_client.post(URL, {"mode": "live", "confirm": "on"})

    assert response.status_code == 403
    assert _mode(tenant) == "disabled"
