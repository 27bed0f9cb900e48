"""The chat page /c/<token>: what it shows, what it escapes, and its headers."""

from __future__ import annotations

import re
from datetime import time, timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from chat import services as chat_services
from chat.models import ChatMessage, ChatSession, MessageRole
from chat.views import CONTENT_SECURITY_POLICY
from locations.models import LocationHours
from tests.conftest import host_of
from tests.factories import (
    LeadFactory,
    LocationFactory,
    ServiceCatalogItemFactory,
    UserFactory,
)

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>'


@pytest.fixture
def lead(tenant):
    location = LocationFactory(
        name="Mission Valley",
        address_line1="123 Tint Way",
        city="San Diego",
        region="CA",
        postal_code="92108",
        phone="+16195550100",
    )
    for weekday in range(7):
        LocationHours.objects.create(
            location=location, weekday=weekday, opens_at=time(8), closes_at=time(18)
        )
    ServiceCatalogItemFactory(name="Ceramic tint", price_cents=39900)
    return LeadFactory(
        location=location,
        first_name="Dana",
        vehicle_year=2022,
        vehicle_make="Honda",
        vehicle_model="Civic",
    )


def link_for(lead) -> str:
    return chat_services.chat_links_create(leads=[lead])[lead.pk]


def assert_private(response) -> None:
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]


def assert_nothing_inline(html: str) -> None:
    """The CSP would block inline code and styles: the page must not need any."""
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert re.search(r'\bsrc="/static/', tag), tag
    assert not re.search(r"<script\b[^>]*>(?!</script>)", html)
    assert "<style" not in html
    for tag in re.findall(r"<[a-z][^>]*>", html):
        assert not re.search(r"\s(style|on[a-z]+)=", tag), tag


def test_the_page_shows_the_header_facts_and_the_history_escaped(lead, tenant_client):
    path = link_for(lead)
    session = ChatSession.objects.get(lead=lead)
    staff = UserFactory(first_name="Sam")
    ChatMessage.objects.create(
        session=session, role=MessageRole.CUSTOMER, body="Hi\nthere", client_id="c-1"
    )
    ChatMessage.objects.create(
        session=session,
        role=MessageRole.ASSISTANT,
        body=f"Ceramic tint is $399.00 {XSS}",
        data={
            "slots": [
                {
                    "id": "S1",
                    "label": "Tue Nov 17, 9:00 AM",
                    "service": "Ceramic tint",
                    "start": "2026-11-17T17:00:00+00:00",
                }
            ]
        },
    )
    last = ChatMessage.objects.create(
        session=session,
        role=MessageRole.STAFF,
        body="[x](javascript:alert(1)) ![i](https://evil.example/i.png)",
        author=staff,
    )

    response = tenant_client.get(path)

    assert response.status_code == 200
    assert_private(response)
    html = response.content.decode()
    assert_nothing_inline(html)
    assert "Hi Dana" in html
    assert "2022 Honda Civic" in html
    assert "Mission Valley" in html
    assert "123 Tint Way, San Diego, CA 92108" in html
    assert 'href="tel:+16195550100"' in html
    assert "Monday: 08:00 AM - 06:00 PM" in html
    assert '<meta name="referrer" content="no-referrer">' in html
    assert 'name="viewport"' in html
    # config for the script, in data attributes
    token = path.removeprefix("/c/")
    assert f'data-ws-path="/ws/chat/{token}/"' in html
    assert f'data-api-base="/api/chat/{token}"' in html
    assert f'data-last-id="{last.pk}"' in html
    assert 'src="/static/chat/chat.js"' in html
    assert 'href="/static/chat/chat.css"' in html
    # the history, oldest first, as text
    assert html.index("Hi\nthere") < html.index("Ceramic tint is $399.00")
    assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;" in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "<script>window" not in html
    assert '<a href="javascript' not in html
    assert "[x](javascript:alert(1))" in html
    assert 'src="https://evil.example' not in html
    assert "Sam from Mission Valley" in html
    assert 'data-slot="S1"' in html
    assert "Tue Nov 17, 9:00 AM" in html
    assert 'aria-live="polite"' in html
    assert '<label class="visually-hidden" for="composer-text">' in html


def test_a_booked_appointment_shows_as_a_card_and_in_the_header(lead, tenant_client):
    path = link_for(lead)
    session = ChatSession.objects.get(lead=lead)
    ChatMessage.objects.create(
        session=session,
        role=MessageRole.ASSISTANT,
        body="You're booked: Ceramic tint on Tue Nov 17, 9:00 AM.",
        data={
            "appointment": {
                "id": 1,
                "service": "Ceramic tint",
                "starts_at": "2026-11-17T17:00:00+00:00",
                "label": "Tue Nov 17, 9:00 AM",
                "location": "Mission Valley",
                "address": "123 Tint Way",
                "price": "$399.00",
                "status": "booked",
            }
        },
    )

    html = tenant_client.get(path).content.decode()

    assert 'class="appt appt-booked"' in html
    assert "You&#x27;re booked" in html
    assert "$399.00" in html


@pytest.mark.parametrize("case", ["unknown", "expired", "revoked_link", "revoked_chat"])
def test_a_link_that_opens_nothing_answers_404_with_the_same_headers(
    case, lead, tenant_client
):
    path = link_for(lead)
    session = ChatSession.objects.get(lead=lead)
    if case == "unknown":
        path = "/c/not-a-real-token-at-all-0123456789"
    elif case == "revoked_link":
        chat_services.chat_links_revoke(session=session)
    elif case == "revoked_chat":
        ChatSession.objects.filter(pk=session.pk).update(revoked_at=timezone.now())

    if case == "expired":
        with time_machine.travel(timezone.now() + timedelta(days=400)):
            response = tenant_client.get(path)
    else:
        response = tenant_client.get(path)

    assert response.status_code == 404
    assert_private(response)
    html = response.content.decode()
    assert_nothing_inline(html)
    assert "This chat link isn't valid" in html
    assert "Dana" not in html


def test_another_brands_link_opens_nothing_at_this_brands_host(
    tenant, other_tenant, tenant_client
):
    with tenant_context(other_tenant):
        theirs = LeadFactory(first_name="Bravo")
        path = link_for(theirs)
        assert Client(HTTP_HOST=host_of(other_tenant)).get(path).status_code == 200

    response = tenant_client.get(path)

    assert response.status_code == 404
    assert_private(response)
    assert "Bravo" not in response.content.decode()
