"""CSRF: the staff admin refuses POSTs without a token; the webhooks and the chat API
are exempt by design (provider signatures and the link's token authorise them, and
no cookie is ever read), see SECURITY.md."""

from __future__ import annotations

import pytest
from django.test import Client

from chat import services as chat_services
from locations.models import Location
from tests.conftest import PLATFORM_HOST, host_of
from tests.factories import LeadFactory, SuperUserFactory
from tests.leads.conftest import event, make_connection, order_row, signed
from tests.messaging.test_inbound_sms import TWILIO_TOKEN, post_sms, sms
from tests.messaging.test_sendgrid_events import (
    SIGNING_KEY,
    post_events,
    public_key_b64,
)


@pytest.fixture
def csrf_client(tenant) -> Client:
    return Client(HTTP_HOST=host_of(tenant), enforce_csrf_checks=True)


def test_admin_login_post_without_a_token_is_refused(csrf_client):
    SuperUserFactory(username="csrf-admin")
    response = csrf_client.post(
        "/admin/login/", {"username": "csrf-admin", "password": "staff-pass"}
    )
    assert response.status_code == 403
    assert "sessionid" not in response.cookies


def test_admin_change_post_of_a_logged_in_user_without_a_token_is_refused(
    csrf_client,
):
    csrf_client.force_login(SuperUserFactory(username="csrf-admin-2"))
    response = csrf_client.post(
        "/admin/locations/location/add/",
        {"name": "Planted by another site", "time_zone": "America/Chicago"},
    )
    assert response.status_code == 403
    assert not Location.objects.filter(name="Planted by another site").exists()


def test_platform_admin_login_without_a_token_is_refused(test_tenants):
    client = Client(HTTP_HOST=PLATFORM_HOST, enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403


def test_twilio_webhook_needs_no_csrf_token(tenant, csrf_client, settings):
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.INBOUND_REPLY_HANDLERS = []
    response = post_sms(csrf_client, sms("hello there"))
    assert response.status_code == 200


def test_sendgrid_webhook_needs_no_csrf_token(tenant, csrf_client, settings):
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = public_key_b64(SIGNING_KEY)
    response = post_events(csrf_client, [])
    assert response.status_code == 200
    assert response.json() == {"applied": 0, "duplicates": 0, "skipped": 0}


def test_shopmonkey_webhook_needs_no_csrf_token(tenant, csrf_client):
    crm = make_connection()
    body, headers = signed(event(order_row()))
    response = csrf_client.post(
        f"/webhooks/shopmonkey/{crm.public_id}/",
        data=body,
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 202


def test_chat_api_needs_no_csrf_token_even_with_a_staff_session(csrf_client):
    """The API reads no cookie: a staff session alongside changes nothing, and the
    link's token in the path is the only authority."""
    csrf_client.force_login(SuperUserFactory(username="csrf-admin-3"))
    lead = LeadFactory()
    token = chat_services.chat_links_create(leads=[lead])[lead.pk][3:]
    response = csrf_client.post(
        f"/api/chat/{token}/messages",
        {"text": "hello", "client_id": "csrf-1"},
        content_type="application/json",
    )
    assert response.status_code == 201
    assert response.json()["message"]["text"] == "hello"
