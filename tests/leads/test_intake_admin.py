"""Staff manage the CRM connection in the admin: write-only secrets, visible intake problems."""

from __future__ import annotations

from django.contrib.auth.models import Permission, User

from leads.models import (
    CRMConnection,
    DeliveryStatus,
    IgnoredOrder,
    IgnoreReason,
    WebhookDelivery,
)
from tests.factories import StaffMembershipFactory, UserFactory
from tests.leads.conftest import event, order_row
from tests.leads.shopmonkey_fakes import WEBHOOK_SECRET


def _form(connection: CRMConnection, **changes) -> dict:
    data = {
        "name": connection.name,
        "provider": connection.provider,
        "is_active": "on",
        "api_key": "",
        "webhook_secret": "",
        "base_url": connection.base_url,
        "lead_workflow_status_id": connection.lead_workflow_status_id,
        "lead_name_prefix": connection.lead_name_prefix,
        "demo_email_patterns": connection.demo_email_patterns,
        "demo_phone_patterns": connection.demo_phone_patterns,
        "poll_enabled": "on",
    }
    data.update(changes)
    return data


def _boss(client):
    boss = User.objects.create_superuser("boss", password="x")
    client.force_login(boss)
    return boss


def test_secrets_are_never_shown_and_empty_keeps_them(crm, tenant_client):
    _boss(tenant_client)

    page = tenant_client.get(
        f"/admin/leads/crmconnection/{crm.pk}/change/"
    ).content.decode()
    saved = tenant_client.post(
        f"/admin/leads/crmconnection/{crm.pk}/change/", _form(crm, name="Main shop")
    )

    assert "sk-test" not in page
    assert WEBHOOK_SECRET not in page
    assert "API key set, webhook secret set" in page
    assert f"/webhooks/shopmonkey/{crm.public_id}/" in page
    assert saved.status_code == 302
    crm.refresh_from_db()
    assert (crm.name, crm.api_key, crm.webhook_secret) == (
        "Main shop",
        "sk-test",
        WEBHOOK_SECRET,
    )


def test_a_new_key_replaces_the_old_one(crm, tenant_client):
    _boss(tenant_client)
    tenant_client.post(
        f"/admin/leads/crmconnection/{crm.pk}/change/", _form(crm, api_key="sk-new")
    )
    crm.refresh_from_db()
    assert crm.api_key == "sk-new"


def test_a_malformed_webhook_secret_is_refused_readably(crm, tenant_client):
    _boss(tenant_client)

    response = tenant_client.post(
        f"/admin/leads/crmconnection/{crm.pk}/change/",
        _form(crm, webhook_secret="whsec_@@@"),
    )

    assert response.status_code == 200
    assert "This is not a webhook secret" in response.content.decode()
    crm.refresh_from_db()
    assert crm.webhook_secret == WEBHOOK_SECRET


def test_unmapped_orders_are_listed_with_their_reason(crm, tenant_client):
    _boss(tenant_client)
    IgnoredOrder.objects.create(
        connection=crm,
        crm_order_id="o-9",
        crm_order_number="1090",
        crm_location_id="shop-77",
        reason=IgnoreReason.UNMAPPED_LOCATION,
        detail="CRM location shop-77 is not mapped to an active location",
    )

    listing = tenant_client.get("/admin/leads/ignoredorder/").content.decode()
    connection_page = tenant_client.get(
        f"/admin/leads/crmconnection/{crm.pk}/change/"
    ).content.decode()

    assert "1090" in listing
    assert "CRM location not mapped to a location" in listing
    assert "Seen in orders but not mapped: shop-77" in connection_page


def test_location_staff_do_not_see_intake_configuration(crm, tenant_client):
    staff = UserFactory()
    staff.user_permissions.set(
        Permission.objects.filter(content_type__app_label="leads")
    )
    StaffMembershipFactory(user=staff)
    tenant_client.force_login(staff)

    assert tenant_client.get("/admin/leads/crmconnection/").status_code == 403
    assert tenant_client.get(
        f"/admin/leads/crmconnection/{crm.pk}/change/"
    ).status_code in {302, 403}
    assert tenant_client.get("/admin/leads/webhookdelivery/").status_code == 403
    index = tenant_client.get("/admin/").content.decode()
    assert "CRM connection" not in index


def test_failed_deliveries_can_be_processed_again(
    crm, shopmonkey, tenant_client, django_capture_on_commit_callbacks
):
    _boss(tenant_client)
    import json

    delivery = WebhookDelivery.objects.create(
        connection=crm,
        table="order",
        operation="INSERT",
        record_id="x",
        record_version="1",
        body=json.dumps(event(order_row())),
        status=DeliveryStatus.FAILED,
        tries=5,
        error="HTTP 503",
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = tenant_client.post(
            "/admin/leads/webhookdelivery/",
            {"action": "process_again", "_selected_action": [delivery.pk]},
        )

    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.result, delivery.error) == (
        DeliveryStatus.PROCESSED,
        "created",
        "",
    )
