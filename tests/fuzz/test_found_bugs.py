"""Inputs the fuzzing found that used to answer 500, kept as plain regression tests."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from chat import services as chat_services
from leads.shopmonkey import Order, WebhookEvent
from tests.conftest import host_of
from tests.factories import LeadFactory
from tests.fuzz.test_webhook_views import TWILIO_TOKEN, post_form
from tests.leads.conftest import make_connection, signed
from tests.messaging.test_sendgrid_events import SIGNING_KEY, public_key_b64, sign

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def client(tenant, settings):
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = public_key_b64(SIGNING_KEY)
    settings.MESSAGING_BACKEND = "outbox"
    settings.INBOUND_REPLY_HANDLERS = []
    settings.OPT_OUT_HANDLERS = []
    return Client(HTTP_HOST=host_of(tenant))


def post_events(client: Client, body: bytes):
    timestamp = str(int(time.time()))
    return client.post(
        "/webhooks/sendgrid/events",
        data=body,
        content_type="application/json",
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP=timestamp,
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE=sign(body, timestamp),
    )


@pytest.mark.parametrize(
    "form",
    [
        {"MessageSid": "\x00", "From": "0"},
        {"MessageSid": "SM1", "From": "+16195550141\x00", "Body": "hi\x00there"},
    ],
)
def test_twilio_sms_with_nul_characters_is_stored_without_them(client, form):
    """Was: DataError (PostgreSQL text cannot contain NUL) -> 500."""
    response = post_form(client, "/webhooks/twilio/sms", form, sign_it=True)
    assert response.status_code in {200, 400}


def test_twilio_status_with_nul_characters_is_not_a_500(client):
    form = {"MessageSid": "SM\x001", "MessageStatus": "sent\x00", "ErrorCode": "\x00"}
    response = post_form(client, "/webhooks/twilio/status", form, sign_it=True)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "event",
    [
        {"event": "bounce", "email": "a\x00@example.com"},
        {"event": "delivered", "sg_event_id": "e\x00"},
        {"event": "open", "sg_message_id": "\x00.x"},
        {"event": "open", "message": "\x00"},
    ],
)
def test_sendgrid_events_with_nul_characters_are_not_a_500(client, event):
    """Was: DataError -> 500 (a signed body)."""
    response = post_events(client, json.dumps([event]).encode())
    assert response.status_code == 200


def test_sendgrid_body_nested_too_deep_is_a_400(client):
    """Was: RecursionError from json.loads -> 500 (a signed body)."""
    response = post_events(client, DEEP)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"


def test_chat_api_body_nested_too_deep_is_a_400(client):
    """Was: RecursionError from DRF's JSONParser -> 500, for anyone holding a link."""
    lead = LeadFactory()
    token = chat_services.chat_links_create(leads=[lead])[lead.pk][3:]
    for path in ("messages", "appointment"):
        response = client.post(
            f"/api/chat/{token}/{path}", data=DEEP, content_type="application/json"
        )
        assert response.status_code == 400
        assert response.json()["error"] == "parse_error"


def test_shopmonkey_fields_lose_nul_characters():
    """Was: a record id or name with NUL reached the database -> DataError -> 500."""
    event = WebhookEvent.from_body(
        {
            "table": "order",
            "operation": "INSERT",
            "data": {"id": "o\x001", "name": "\x00"},
        }
    )
    assert event.record_id == "o1"
    assert Order.from_api(event.data).name == ""
    with pytest.raises(Exception, match="no data object with an id"):
        WebhookEvent.from_body(
            {"table": "order", "operation": "x", "data": {"id": "\x00"}}
        )


def test_shopmonkey_webhook_with_nul_characters_is_a_4xx_not_a_500(client):
    crm = make_connection()
    body, headers = signed(
        {"table": "order", "operation": "INSERT", "data": {"id": "\x00"}}
    )
    response = client.post(
        f"/webhooks/shopmonkey/{crm.public_id}/",
        data=body,
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 400


def test_shopmonkey_body_nested_too_deep_is_a_400(client):
    """Was: RecursionError from json.loads -> 500 (a signed body)."""
    crm = make_connection()
    body, headers = signed(DEEP)
    response = client.post(
        f"/webhooks/shopmonkey/{crm.public_id}/",
        data=body,
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"


@pytest.mark.parametrize("after", ["²", "٣", "99999999999999999999999999"])
def test_chat_api_after_that_is_not_a_plain_number(client, after):
    """Was: "²".isdigit() is true, int("²") raises -> 500. Now: only ASCII digits."""
    lead = LeadFactory()
    token = chat_services.chat_links_create(leads=[lead])[lead.pk][3:]
    response = client.get(f"/api/chat/{token}/messages", {"after": after})
    if after.isascii():
        assert response.status_code == 200
        assert response.json()["messages"] == []
    else:
        assert response.status_code == 400
