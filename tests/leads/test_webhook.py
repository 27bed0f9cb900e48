"""POST /webhooks/shopmonkey/<connection>/: verified, stored, acknowledged, processed in a worker."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django_tenants.utils import tenant_context

from leads.models import (
    DeliveryStatus,
    IgnoredOrder,
    IgnoreReason,
    Lead,
    LeadSource,
    WebhookDelivery,
)
from tests.conftest import host_of
from tests.leads.conftest import event, make_connection, order_row, signed
from tests.leads.shopmonkey_fakes import LEAD_ORDER_ID, fixture_bytes
from tests.leads.shopmonkey_fakes import fixture as load_fixture


def _url(connection) -> str:
    return f"/webhooks/shopmonkey/{connection.public_id}/"


def _post(client, connection, body: bytes, headers: dict[str, str]):
    return client.post(
        _url(connection), data=body, content_type="application/json", **headers
    )


def test_valid_delivery_is_acknowledged_stored_and_becomes_a_lead(
    tenant, crm, shopmonkey, tenant_client, django_capture_on_commit_callbacks
):
    # given: the fixture body, signed now
    body, headers = signed(fixture_bytes("webhook_order_created.json"))

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(tenant_client, crm, body, headers)

    # then
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.table, delivery.operation, delivery.record_id) == (
        "order",
        "INSERT",
        LEAD_ORDER_ID,
    )
    assert delivery.body.encode() == body
    assert delivery.status == DeliveryStatus.PROCESSED
    assert delivery.result == "created"
    lead = Lead.objects.get()
    assert (lead.crm_connection, lead.crm_order_id, lead.source) == (
        crm,
        LEAD_ORDER_ID,
        LeadSource.WEBHOOK,
    )
    assert (lead.first_name, lead.last_name, lead.email, lead.phone) == (
        "Jordan",
        "Rivera",
        "jordan.rivera@example.com",
        "+15555550142",
    )
    assert (lead.vehicle_year, lead.vehicle_make, lead.vehicle_model) == (
        2018,
        "Honda",
        "Civic EX",
    )
    assert lead.location.crm_location_id == crm.leads.get().location.crm_location_id
    assert lead.crm_created_at == datetime(2026, 9, 24, 14, 12, 5, 318000, tzinfo=UTC)
    assert lead.ingested_at is not None
    # The webhook carried the whole order: only the customer and the vehicle were fetched.
    assert shopmonkey.order_route.call_count == 0
    assert shopmonkey.customer_route.call_count == 1
    assert shopmonkey.vehicle_route.call_count == 1


def test_fixture_signature_verifies_as_delivered(
    tenant, crm, tenant_client, shopmonkey
):
    """The exact headers of the shared fixture, at the time they were signed."""
    headers = load_fixture("webhook_headers.json")["deliveries"][
        "webhook_order_created.json"
    ]
    meta = {
        f"HTTP_{name.upper().replace('-', '_')}": value
        for name, value in headers.items()
        if name.lower().startswith(("webhook", "x-"))
    }

    with time_machine.travel(
        datetime.fromtimestamp(int(headers["webhook-timestamp"]) + 30, tz=UTC),
        tick=False,
    ):
        response = _post(
            tenant_client, crm, fixture_bytes("webhook_order_created.json"), meta
        )

    assert response.status_code == 202


def test_invalid_signature_is_401_and_nothing_is_stored(tenant, crm, tenant_client):
    body, headers = signed(event(order_row()))
    headers["HTTP_WEBHOOK_SIGNATURE"] = (
        "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    )

    response = _post(tenant_client, crm, body, headers)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert not WebhookDelivery.objects.exists()
    assert not Lead.objects.exists()


def test_tampered_body_is_401(tenant, crm, tenant_client):
    body, headers = signed(event(order_row()))
    response = _post(tenant_client, crm, body.replace(b"Estimate", b"Invoice"), headers)
    assert response.status_code == 401
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(
    "missing", ["HTTP_WEBHOOK_ID", "HTTP_WEBHOOK_TIMESTAMP", "HTTP_WEBHOOK_SIGNATURE"]
)
def test_missing_signature_header_is_401(tenant, crm, tenant_client, missing):
    body, headers = signed(event(order_row()))
    del headers[missing]

    response = _post(tenant_client, crm, body, headers)

    assert response.status_code == 401
    assert "Missing required headers" in response.json()["detail"]
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_stale_or_future_timestamp_is_401(tenant, crm, tenant_client, skew):
    body, headers = signed(event(order_row()), at=datetime.now(UTC) + skew)

    response = _post(tenant_client, crm, body, headers)

    assert response.status_code == 401
    assert response.json()["error"] == "stale_timestamp"
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize("signature", ["garbage", "v1,not-base64!", "v1", ""])
def test_malformed_signature_header_is_401_not_500(
    tenant, crm, tenant_client, signature
):
    body, headers = signed(event(order_row()))
    headers["HTTP_WEBHOOK_SIGNATURE"] = signature
    response = _post(tenant_client, crm, body, headers)
    assert response.status_code == 401


def test_signature_of_another_brands_connection_is_401(
    tenant, crm, tenant_client, other_tenant
):
    # given: brand bravo has its own connection and secret
    with tenant_context(other_tenant):
        bravo = make_connection(
            webhook_secret="whsec_YnJhdm8tb25seS1zZWNyZXQtZm9yLXRlc3Rz"
        )
        bravo_secret = bravo.webhook_secret
    body, headers = signed(event(order_row()), secret=bravo_secret)

    # when: signed with bravo's secret, sent to alpha's connection
    response = _post(tenant_client, crm, body, headers)

    # then
    assert response.status_code == 401
    assert not WebhookDelivery.objects.exists()


def test_another_brands_connection_id_is_404_at_this_host(tenant, crm, other_tenant):
    with tenant_context(other_tenant):
        bravo = make_connection()
    body, headers = signed(event(order_row()))

    response = _post(Client(HTTP_HOST=host_of(tenant)), bravo, body, headers)

    assert response.status_code == 404
    assert response.json()["error"] == "unknown_connection"


def test_unknown_connection_is_404(tenant, crm, tenant_client):
    body, headers = signed(event(order_row()))
    response = tenant_client.post(
        "/webhooks/shopmonkey/00000000-0000-0000-0000-000000000000/",
        data=body,
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 404


def test_malformed_json_is_400(tenant, crm, tenant_client):
    body, headers = signed(b'{"operation": "INSERT", "table": ')

    response = _post(tenant_client, crm, body, headers)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"
    assert not WebhookDelivery.objects.exists()


def test_json_without_a_record_is_400(tenant, crm, tenant_client):
    body, headers = signed(
        {"operation": "INSERT", "table": "order", "data": {"name": "no id"}}
    )
    response = _post(tenant_client, crm, body, headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_body"


def test_oversized_body_is_413(tenant, crm, tenant_client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1000
    body, headers = signed(event(order_row(complaint="x" * 2000)))

    response = _post(tenant_client, crm, body, headers)

    assert response.status_code == 413
    assert not WebhookDelivery.objects.exists()


def test_get_is_405_with_no_side_effects(tenant, crm, tenant_client):
    assert tenant_client.get(_url(crm)).status_code == 405


def test_redelivery_of_the_same_version_is_acknowledged_once(
    tenant, crm, shopmonkey, tenant_client, django_capture_on_commit_callbacks
):
    row = order_row(id=LEAD_ORDER_ID)
    first_body, first_headers = signed(event(row))
    # ShopMonkey's retry: a new webhook-id, the same record version
    again_body, again_headers = signed(event(row))

    with django_capture_on_commit_callbacks(execute=True):
        first = _post(tenant_client, crm, first_body, first_headers)
        again = _post(tenant_client, crm, again_body, again_headers)

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["status"] == "duplicate"
    assert WebhookDelivery.objects.count() == 1
    assert Lead.objects.count() == 1


def test_update_of_an_ingested_order_adds_no_lead(
    tenant, crm, shopmonkey, tenant_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _post(tenant_client, crm, *signed(fixture_bytes("webhook_order_created.json")))
        response = _post(
            tenant_client, crm, *signed(fixture_bytes("webhook_order_updated.json"))
        )

    assert response.status_code == 202
    assert Lead.objects.count() == 1
    assert list(
        WebhookDelivery.objects.order_by("pk").values_list("result", flat=True)
    ) == ["created", "exists"]


def test_unmapped_location_is_recorded_not_ingested(
    tenant, crm, shopmonkey, tenant_client, django_capture_on_commit_callbacks
):
    row = order_row(locationId="unknown-shop-17", number="2001")

    with django_capture_on_commit_callbacks(execute=True):
        response = _post(tenant_client, crm, *signed(event(row)))

    assert response.status_code == 202
    assert not Lead.objects.exists()
    ignored = IgnoredOrder.objects.get()
    assert (
        ignored.crm_order_id,
        ignored.crm_order_number,
        ignored.reason,
        ignored.crm_location_id,
    ) == (
        row["id"],
        "2001",
        IgnoreReason.UNMAPPED_LOCATION,
        "unknown-shop-17",
    )
    assert "unknown-shop-17 is not mapped" in ignored.detail
    assert WebhookDelivery.objects.get().result.startswith("ignored")


@pytest.mark.parametrize(
    ("patterns", "ingested"),
    [
        ({"demo_email_patterns": "*@example.com", "demo_phone_patterns": ""}, True),
        ({"demo_email_patterns": "", "demo_phone_patterns": "+1555555*"}, True),
        (
            {
                "demo_email_patterns": "*@tintworld.test",
                "demo_phone_patterns": "+1999*",
            },
            False,
        ),
    ],
)
def test_demo_mode_ingests_only_test_contacts(
    tenant,
    store,
    shopmonkey,
    tenant_client,
    django_capture_on_commit_callbacks,
    patterns,
    ingested,
):
    connection = make_connection(is_demo_mode=True, **patterns)

    with django_capture_on_commit_callbacks(execute=True):
        _post(tenant_client, connection, *signed(event(order_row())))

    assert Lead.objects.exists() is ingested
    if not ingested:
        assert IgnoredOrder.objects.get().reason == IgnoreReason.DEMO_MODE


def test_demo_mode_setting_applies_to_every_connection(
    tenant, crm, shopmonkey, tenant_client, settings, django_capture_on_commit_callbacks
):
    settings.DEMO_MODE = True
    crm.demo_email_patterns = "*@nowhere.test"
    crm.demo_phone_patterns = ""
    crm.save()

    with django_capture_on_commit_callbacks(execute=True):
        _post(tenant_client, crm, *signed(event(order_row())))

    assert not Lead.objects.exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "RepairOrder"},
        {"authorized": True},
        {"messageCount": 1},
        {"name": "Brake job"},
        {"workflowStatusId": "other-column"},
    ],
)
def test_orders_outside_the_lead_rule_make_no_lead(
    tenant, crm, shopmonkey, tenant_client, django_capture_on_commit_callbacks, changes
):
    with django_capture_on_commit_callbacks(execute=True):
        _post(tenant_client, crm, *signed(event(order_row(**changes))))

    assert not Lead.objects.exists()
    assert not IgnoredOrder.objects.exists()
    assert WebhookDelivery.objects.get().result.startswith("not_a_lead")


def test_a_thin_event_fetches_the_order(
    tenant, crm, shopmonkey, tenant_client, django_capture_on_commit_callbacks
):
    thin = {"id": LEAD_ORDER_ID, "meta": {"version": 5}}

    with django_capture_on_commit_callbacks(execute=True):
        _post(tenant_client, crm, *signed(event(thin, operation="UPDATE")))

    assert Lead.objects.get().crm_order_id == LEAD_ORDER_ID
    assert shopmonkey.order_route.call_count == 1


def test_api_failure_marks_the_delivery_failed_for_retry(
    tenant, crm, shopmonkey, tenant_client, django_capture_on_commit_callbacks, settings
):
    settings.SHOPMONKEY_TIMEOUT_SECONDS = 0.1
    shopmonkey.customer_route.mock(
        return_value=__import__("httpx").Response(
            503, json={"success": False, "message": "down"}
        )
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = _post(tenant_client, crm, *signed(event(order_row())))

    assert response.status_code == 202  # acknowledged: it is in the inbox
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert "HTTP 503" in delivery.error
    assert not Lead.objects.exists()


def _concurrent(count: int, work) -> list:
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        from django.db import connection

        try:
            barrier.wait()
            results[index] = work(index)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_twenty_concurrent_deliveries_of_one_order_make_one_lead(
    tenant_tx, store, shopmonkey
):
    crm = make_connection()
    row = order_row(id=LEAD_ORDER_ID)
    host = host_of(tenant_tx)

    def deliver(index: int) -> int:
        # half are retries of one version, half carry newer versions of the same order
        version = {**row, "meta": {"version": 1000 + (index if index % 2 else 0)}}
        body, headers = signed(
            event(version, operation="UPDATE" if index else "INSERT")
        )
        return (
            Client(HTTP_HOST=host)
            .post(_url(crm), data=body, content_type="application/json", **headers)
            .status_code
        )

    statuses = _concurrent(20, deliver)

    assert sorted(set(statuses)) <= [200, 202]
    assert (
        statuses.count(202) == 11
    )  # one for version 1000, one for each of the ten odd versions
    assert Lead.objects.filter(crm_order_id=LEAD_ORDER_ID).count() == 1
    assert WebhookDelivery.objects.count() == 11
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {
        DeliveryStatus.PROCESSED
    }


def test_a_webhook_and_a_poll_of_one_order_at_once_make_one_lead(
    tenant_tx, store, shopmonkey
):
    from leads import intake

    crm = make_connection()
    host = host_of(tenant_tx)
    body, headers = signed(fixture_bytes("webhook_order_created.json"))

    def work(index: int):
        if index == 0:
            return (
                Client(HTTP_HOST=host)
                .post(_url(crm), data=body, content_type="application/json", **headers)
                .status_code
            )
        with tenant_context(tenant_tx):
            job = intake.connection_poll(connection=crm)
            return job.leads_created

    webhook_status, poll_created = _concurrent(2, work)

    assert webhook_status == 202
    assert Lead.objects.filter(crm_order_id=LEAD_ORDER_ID).count() == 1
    sources = set(Lead.objects.values_list("source", flat=True))
    assert len(sources) == 1
    assert poll_created in {0, 1}
    assert json.loads(WebhookDelivery.objects.get().body)["data"]["id"] == LEAD_ORDER_ID
