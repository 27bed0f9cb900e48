"""webhooks.webhook_connection: a delivery's connection, kept in the process for a few seconds."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from leads import webhooks
from tests.leads.conftest import make_connection
from tests.leads.shopmonkey_fakes import WEBHOOK_SECRET


@pytest.fixture
def cache(settings, monkeypatch):
    """Caching on, in a cache of this test's own."""
    settings.WEBHOOK_CONNECTION_CACHE_SECONDS = 60
    monkeypatch.setattr(webhooks, "_connections", {})


def test_a_burst_of_deliveries_reads_the_connection_once(
    tenant, cache, django_assert_num_queries
):
    crm = make_connection()

    with django_assert_num_queries(1):
        first = webhooks.webhook_connection(public_id=crm.public_id)
        again = webhooks.webhook_connection(public_id=crm.public_id)

    assert first.pk == again.pk == crm.pk
    assert again.webhook_secret == WEBHOOK_SECRET  # decrypted once, kept decrypted
    assert again is not first  # a copy each time: no caller changes another's
    assert (
        webhooks.webhook_connection_cached(
            schema_name=tenant.schema_name, public_id=crm.public_id
        ).pk
        == crm.pk
    )


def test_saving_or_deleting_a_connection_is_seen_at_once(tenant, cache):
    crm = make_connection()
    webhooks.webhook_connection(public_id=crm.public_id)

    crm.webhook_secret = "whsec_cm90YXRlZC1zZWNyZXQtZm9yLXRoZS10ZXN0"
    crm.save()
    assert (
        webhooks.webhook_connection(public_id=crm.public_id).webhook_secret
        == crm.webhook_secret
    )

    crm.is_active = False
    crm.save()
    assert webhooks.webhook_connection(public_id=crm.public_id) is None

    crm.is_active = True
    crm.save()
    webhooks.webhook_connection(public_id=crm.public_id)
    public_id = crm.public_id
    crm.delete()
    assert webhooks.webhook_connection(public_id=public_id) is None


def test_unknown_and_inactive_connections_are_not_kept(
    tenant, cache, django_assert_num_queries
):
    inactive = make_connection(is_active=False)
    unknown = uuid.uuid4()

    with django_assert_num_queries(4):
        for _ in range(2):
            assert webhooks.webhook_connection(public_id=inactive.public_id) is None
            assert webhooks.webhook_connection(public_id=unknown) is None


def test_a_connection_is_kept_per_brand(tenant, other_tenant, cache):
    crm = make_connection()
    webhooks.webhook_connection(public_id=crm.public_id)

    with tenant_context(other_tenant):
        assert webhooks.webhook_connection(public_id=crm.public_id) is None
    assert (
        webhooks.webhook_connection_cached(
            schema_name=other_tenant.schema_name, public_id=crm.public_id
        )
        is None
    )
    assert connection.schema_name == tenant.schema_name


def test_zero_seconds_reads_the_connection_every_time(
    tenant, settings, django_assert_num_queries
):
    settings.WEBHOOK_CONNECTION_CACHE_SECONDS = 0
    crm = make_connection()

    with django_assert_num_queries(2):
        webhooks.webhook_connection(public_id=crm.public_id)
        webhooks.webhook_connection(public_id=crm.public_id)
