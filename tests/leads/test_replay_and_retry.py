"""The offline demo path (a signed sample through the real endpoint) and the retry of stuck deliveries."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import OrmQ

from leads import tasks, webhooks
from leads.models import DeliveryStatus, Lead, LeadSource, WebhookDelivery
from leads.sample_orders import sample_order_event
from tests.factories import LocationFactory
from tests.leads.conftest import event, make_connection, order_row


def test_replay_sends_a_signed_sample_through_the_running_server(
    tenant_tx, live_server
):
    # given: a brand with a mapped location and a demo-mode connection without an API key
    LocationFactory(crm_location_id="store-1")
    make_connection(api_key="", base_url="", is_demo_mode=True)
    out = StringIO()

    # when
    call_command(
        "replay_sample_webhook", tenant="alpha", server=live_server.url, stdout=out
    )

    # then: accepted by the real endpoint, processed offline (the order carries its customer)
    assert "HTTP 202" in out.getvalue()
    lead = Lead.objects.get()
    assert lead.source == LeadSource.WEBHOOK
    assert lead.email.endswith("@example.com")
    assert lead.phone.startswith("+1555555")
    assert lead.location.crm_location_id == "store-1"
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PROCESSED


def test_replay_explains_when_the_server_is_not_running(tenant, store):
    make_connection()
    with pytest.raises(CommandError, match="Is `make run` running"):
        call_command(
            "replay_sample_webhook",
            tenant="alpha",
            server="http://127.0.0.1:9",
            stdout=StringIO(),
        )


def test_replay_needs_a_webhook_secret(tenant, store):
    make_connection(webhook_secret="")
    with pytest.raises(
        CommandError, match="no active connection with a webhook secret"
    ):
        call_command("replay_sample_webhook", tenant="alpha", stdout=StringIO())


def test_sample_orders_meet_the_lead_rule():
    from leads.intake import lead_rule_check
    from leads.models import CRMConnection
    from leads.shopmonkey import Order

    body = sample_order_event(location_crm_id="x", workflow_status_id="col")
    order = Order.from_api(body["data"])
    assert (
        lead_rule_check(
            connection=CRMConnection(lead_workflow_status_id="col"), order=order
        )
        == ""
    )
    assert order.customer is not None
    assert order.vehicle is not None


def _delivery(crm, *, status, tries, age, last_try_age=None):
    now = timezone.now()
    return WebhookDelivery.objects.create(
        connection=crm,
        table="order",
        operation="INSERT",
        record_id=f"r{WebhookDelivery.objects.count()}",
        record_version="1",
        body=json.dumps(event(order_row())),
        status=status,
        tries=tries,
        received_at=now - age,
        processed_at=None if last_try_age is None else now - last_try_age,
    )


def test_stuck_and_failed_deliveries_are_retried_with_backoff(crm):
    crashed = _delivery(
        crm, status=DeliveryStatus.RECEIVED, tries=0, age=timedelta(minutes=5)
    )
    fresh = _delivery(
        crm, status=DeliveryStatus.RECEIVED, tries=0, age=timedelta(seconds=5)
    )
    failed_due = _delivery(
        crm,
        status=DeliveryStatus.FAILED,
        tries=1,
        age=timedelta(minutes=10),
        last_try_age=timedelta(minutes=3),
    )
    failed_waiting = _delivery(
        crm,
        status=DeliveryStatus.FAILED,
        tries=3,
        age=timedelta(minutes=10),
        last_try_age=timedelta(minutes=3),
    )
    exhausted = _delivery(
        crm,
        status=DeliveryStatus.FAILED,
        tries=5,
        age=timedelta(hours=2),
        last_try_age=timedelta(hours=1),
    )
    dead_worker = _delivery(
        crm,
        status=DeliveryStatus.PROCESSING,
        tries=1,
        age=timedelta(hours=1),
        last_try_age=timedelta(minutes=30),
    )
    busy = _delivery(
        crm,
        status=DeliveryStatus.PROCESSING,
        tries=1,
        age=timedelta(minutes=2),
        last_try_age=timedelta(minutes=1),
    )
    done = _delivery(
        crm,
        status=DeliveryStatus.PROCESSED,
        tries=1,
        age=timedelta(hours=1),
        last_try_age=timedelta(hours=1),
    )

    due = webhooks.deliveries_needing_retry()

    assert set(due) == {crashed.pk, failed_due.pk, dead_worker.pk}
    assert not {fresh.pk, failed_waiting.pk, exhausted.pk, busy.pk, done.pk} & set(due)


def test_retry_job_processes_what_is_due(crm, shopmonkey, tenant, settings):
    stuck = _delivery(
        crm, status=DeliveryStatus.RECEIVED, tries=0, age=timedelta(minutes=5)
    )

    tasks.deliveries_retry_enqueue()  # queued tasks run in-process in tests

    stuck.refresh_from_db()
    assert stuck.status == DeliveryStatus.PROCESSED
    assert Lead.objects.count() == 1
    assert not OrmQ.objects.exists()


def test_a_database_error_while_processing_leaves_the_delivery_failed_for_retry(
    crm, shopmonkey, tenant, monkeypatch
):
    """The database restarting mid-way must not park the row "processing" for
    PROCESSING_TIMEOUT: it is failed, and the retry pass takes it after the backoff."""
    from django.db import OperationalError

    delivery = _delivery(
        crm, status=DeliveryStatus.RECEIVED, tries=0, age=timedelta(minutes=5)
    )

    def database_gone(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(webhooks, "intake_process_order", database_gone)
    outcome = webhooks.webhook_delivery_process(delivery_id=delivery.pk)
    monkeypatch.undo()

    delivery.refresh_from_db()
    assert outcome.startswith("failed: database error")
    assert (delivery.status, delivery.tries) == (DeliveryStatus.FAILED, 1)
    assert "server closed the connection" in delivery.error
    assert not Lead.objects.exists()
    later = timezone.now() + timedelta(minutes=3)
    assert delivery.pk in webhooks.deliveries_needing_retry(now=later)
    assert webhooks.webhook_delivery_process(delivery_id=delivery.pk).startswith(
        "created"
    )
    assert Lead.objects.count() == 1
