"""The chat REST API: the socket's operations by the same token, JSON errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from appointments.models import Appointment
from chat import services as chat_services
from chat.models import ChatLink
from tests.conftest import host_of
from tests.factories import LeadFactory, LocationFactory


@pytest.fixture
def token(session):
    return chat_services.chat_links_create(leads=[session.lead])[session.lead_id][3:]


@pytest.fixture
def api(tenant):
    return Client(HTTP_HOST=host_of(tenant))


def test_post_a_message_and_get_the_answer(api, token):
    response = api.post(
        f"/api/chat/{token}/messages",
        {"text": "How much is ceramic tint?", "client_id": "c1"},
        content_type="application/json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["message"]["text"] == "How much is ceramic tint?"
    assert "$449.00" in body["replies"][0]["text"]

    again = api.post(
        f"/api/chat/{token}/messages",
        {"text": "How much is ceramic tint?", "client_id": "c1"},
        content_type="application/json",
    )
    assert again.status_code == 200
    assert again.json()["replies"] == []

    history = api.get(f"/api/chat/{token}/messages").json()["messages"]
    assert [m["role"] for m in history] == ["customer", "assistant"]
    after = api.get(f"/api/chat/{token}/messages?after={history[0]['id']}").json()
    assert [m["id"] for m in after["messages"]] == [history[1]["id"]]


def test_book_an_offered_slot(api, token, customer):
    offer = api.post(
        f"/api/chat/{token}/messages",
        {"text": "book ceramic tint tuesday"},
        content_type="application/json",
    ).json()
    slot = offer["replies"][0]["slots"][0]
    response = api.post(
        f"/api/chat/{token}/appointment",
        {"slot": slot["id"], "client_id": "b1"},
        content_type="application/json",
    )
    assert response.status_code == 201
    body = response.json()
    appointment = Appointment.objects.get(lead=customer)
    assert body["appointment"]["id"] == appointment.pk
    assert appointment.starts_at.isoformat() == slot["start"]
    assert [m["role"] for m in body["messages"]] == ["customer", "assistant"]
    resend = api.post(
        f"/api/chat/{token}/appointment",
        {"slot": slot["id"], "client_id": "b1"},
        content_type="application/json",
    )
    assert resend.status_code == 200, resend.json()
    assert Appointment.objects.filter(lead=customer).count() == 1


def test_a_slot_never_offered_is_refused(api, token):
    response = api.post(
        f"/api/chat/{token}/appointment",
        {"slot": "S1"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "slot_not_offered"


def test_context_shows_only_this_customer_and_the_location(api, token, store):
    LeadFactory(location=store, first_name="Zebulon", email="zeb@example.net")
    body = api.get(f"/api/chat/{token}/context").json()
    assert body["first_name"] == "Maria"
    assert body["location"]["name"] == "Store094"
    assert {s["price"] for s in body["services"]} >= {"$449.00"}
    assert "Zebulon" not in str(body)
    assert "zeb@example.net" not in str(body)


@pytest.mark.parametrize(
    ("payload", "code"),
    [({}, "invalid"), ({"text": "   "}, "empty"), ({"text": "x" * 1001}, "too_long")],
)
def test_bad_messages_get_a_json_400(api, token, payload, code):
    response = api.post(
        f"/api/chat/{token}/messages", payload, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == code


def test_malformed_json_and_a_bad_after_are_400(api, token):
    response = api.post(
        f"/api/chat/{token}/messages", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert api.get(f"/api/chat/{token}/messages?after=abc").status_code == 400


def test_unknown_expired_and_revoked_tokens_are_the_same_404(api, token, session):
    unknown = api.get("/api/chat/nope/messages")
    ChatLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = api.get(f"/api/chat/{token}/messages")
    fresh = chat_services.chat_links_create(leads=[session.lead])[session.lead_id][3:]
    chat_services.chat_links_revoke(session=session)
    revoked = api.get(f"/api/chat/{fresh}/messages")
    assert {r.status_code for r in (unknown, expired, revoked)} == {404}
    assert unknown.json() == expired.json() == revoked.json()


def test_a_token_of_another_brand_is_404_here(api, other_tenant, tenant):
    with tenant_context(other_tenant):
        lead = LeadFactory(location=LocationFactory())
        token = chat_services.chat_links_create(leads=[lead])[lead.pk][3:]
    with tenant_context(tenant):
        assert api.get(f"/api/chat/{token}/messages").status_code == 404
        assert api.get(f"/api/chat/{token}/context").status_code == 404


def test_the_schema_documents_the_chat_operations(api):
    schema = api.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    assert "post" in paths["/api/chat/{token}/messages"]
    assert "get" in paths["/api/chat/{token}/messages"]
    assert "get" in paths["/api/chat/{token}/context"]
    assert "post" in paths["/api/chat/{token}/appointment"]
