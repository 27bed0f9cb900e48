"""Location staff in a real browser: the dashboard, and answering a waiting customer."""

from __future__ import annotations

import re
from datetime import time
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from chat import services as chat_services
from chat.models import ChatMessage, ChatSession, MessageRole
from leads.models import LeadStatus
from locations.models import LocationHours
from tests.browser.conftest import ARTIFACTS, Guard, LiveServer
from tests.factories import (
    LeadFactory,
    LocationFactory,
    ServiceCatalogItemFactory,
    StaffMembershipFactory,
    UserFactory,
)

pytestmark = pytest.mark.browser

PASSWORD = "staff-pass"
STAFF_PERMISSIONS = [
    "view_lead",
    "change_lead",
    "view_chatsession",
    "change_chatsession",
]


def location_staff(location: Any) -> Any:
    """Staff of ``location`` only, with a password the server can check (see the chat
    page tests: the test settings hash with MD5)."""
    user = UserFactory(username="tess", first_name="Tess", is_staff=True)
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "browsertests", 1000)
    user.save(update_fields=["password"])
    user.user_permissions.set(Permission.objects.filter(codename__in=STAFF_PERMISSIONS))
    StaffMembershipFactory(user=user, location=location)
    return user


def shop(name: str) -> Any:
    location = LocationFactory(name=name, time_zone="America/Los_Angeles")
    for weekday in range(7):
        LocationHours.objects.create(
            location=location, weekday=weekday, opens_at=time(8), closes_at=time(18)
        )
    return location


def waiting_customer(location: Any, first_name: str) -> tuple[ChatSession, str]:
    lead = LeadFactory(location=location, first_name=first_name)
    path = chat_services.chat_links_create(leads=[lead])[lead.pk]
    session = ChatSession.objects.get(lead=lead)
    chat_services.customer_message_post(session=session, text="Can I talk to a person?")
    chat_services.handoff_request(session=session, reason="The customer asked")
    return session, path


def test_location_staff_see_their_dashboard_and_answer_a_waiting_customer(
    tenant_tx, server: LiveServer, open_page, guard: Guard
):
    mine, theirs = shop("Mission Valley"), shop("Chula Vista")
    ServiceCatalogItemFactory(code="ceramic-tint", name="Ceramic tint")
    for status in (LeadStatus.NEW, LeadStatus.CONTACTED, LeadStatus.ENGAGED):
        LeadFactory(location=mine, status=status)
    LeadFactory.create_batch(5, location=theirs)
    session, path = waiting_customer(mine, "Dana")
    other_session, _ = waiting_customer(theirs, "Omar")
    location_staff(mine)

    customer = open_page()
    customer.goto(server.url(path))
    expect(customer.locator("#chat")).to_have_attribute("data-connection", "live")

    staff = open_page(viewport={"width": 1280, "height": 1000})
    staff.goto(server.url("/admin/login/?next=/admin/leads/lead/dashboard/"))
    staff.locator("#id_username").fill("tess")
    staff.locator("#id_password").fill(PASSWORD)
    staff.locator("input[type=submit]").click()
    expect(staff).to_have_url(re.compile(r"/admin/leads/lead/dashboard/$"))
    summary = staff.locator("#dashboard-summary")
    expect(summary).to_contain_text("leads created")
    # Three leads and Dana at their location; none of the other location's.
    expect(summary.locator(".figure").first).to_have_text("4")
    for chart in ("chart-speed", "chart-funnel", "chart-leads", "chart-messages"):
        expect(staff.locator(f"#{chart}")).to_be_visible()
    drawn = staff.evaluate(
        "() => [...document.querySelectorAll('canvas')].every(c => c.width > 0)"
    )
    assert drawn
    assert "Chula Vista" not in staff.content()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    staff.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    staff.goto(server.url("/admin/chat/chatsession/?waiting=yes"))
    rows = staff.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Dana")
    rows.first.locator("a").first.click()
    staff.locator("#chat-reply-form textarea[name=text]").fill(
        "Hi Dana, Tess from Mission Valley. How can I help?"
    )
    staff.locator("#chat-reply-form input[type=submit]").click()
    expect(staff.locator(".messagelist")).to_contain_text("Reply sent.")

    expect(customer.locator(".msg-staff .msg-text")).to_have_text(
        "Hi Dana, Tess from Mission Valley. How can I help?"
    )
    session.refresh_from_db()
    assert session.waiting_since is None
    assert (
        ChatMessage.objects.filter(session=session, role=MessageRole.STAFF).count() == 1
    )
    # The other location's customer is still waiting, untouched and unseen.
    other_session.refresh_from_db()
    assert other_session.waiting_since is not None
    assert not ChatMessage.objects.filter(
        session=other_session, role=MessageRole.STAFF
    ).exists()
    response = staff.goto(
        server.url(f"/admin/chat/chatsession/{other_session.pk}/change/")
    )
    assert "Omar" not in staff.content()
    assert response.status in (200, 302, 404)
    assert guard.outside_requests == []
    assert guard.page_errors == []
