"""A lead's page in the admin: everything about the lead, its actions, its scope."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from appointments import services as appointment_services
from chat import services as chat_services
from chat.models import ChatLink
from leads.models import LeadStatus
from messaging.models import MessageKind, OutboundMessage
from tests.appointments.conftest import TUESDAY_10, customer, store, tint  # noqa: F401
from tests.chat.conftest import say
from tests.factories import (
    LeadFactory,
    LocationFactory,
    StaffMembershipFactory,
    SuperUserFactory,
    UserFactory,
)
from tests.touchpoints.conftest import set_outbound_mode
from touchpoints import services as cadence
from touchpoints.models import CadenceEnrollment, EnrollmentStatus

# Monday 10:00 at the San Diego store.
MONDAY_10 = datetime(2026, 11, 16, 18, 0, tzinfo=UTC)


def page_url(lead) -> str:
    return f"/admin/leads/lead/{lead.pk}/change/"


def action_url(lead, action: str) -> str:
    return f"/admin/leads/lead/{lead.pk}/do/{action}/"


@pytest.fixture
def clock():
    with time_machine.travel(MONDAY_10, tick=False):
        yield


@pytest.fixture
def boss(tenant_client, tenant, settings, clock):
    settings.MESSAGING_BACKEND = "outbox"
    set_outbound_mode(tenant, "live")
    tenant_client.force_login(SuperUserFactory(username="boss"))
    return tenant_client


@pytest.fixture
def busy_lead(customer, tint, django_capture_on_commit_callbacks):
    """A lead with follow-up, messages, a conversation and an appointment."""
    with django_capture_on_commit_callbacks(execute=True):
        cadence.cadence_start(lead=customer)
    session = chat_services.session_for_lead(lead=customer)
    say(session, "How much is ceramic tint?")
    appointment_services.appointment_book(
        lead=customer, service=tint, starts_at=TUESDAY_10, source="chat"
    )
    return customer


def test_the_page_shows_history_follow_up_messages_chat_and_appointments(
    boss, busy_lead
):
    page = boss.get(page_url(busy_lead)).content.decode()
    assert "Status history" in page
    assert "Appointment set" in page
    assert "Follow-up: stopped" in page
    assert "Recorded (outbox, not sent)" in page
    assert "$449.00" in page  # the assistant's answer in the transcript
    assert "Tue Nov 17, 2026 10:00" in page or "Nov 17, 2026" in page
    assert "Waiting to sync" in page


def test_the_page_runs_the_same_queries_whatever_the_history(boss, busy_lead):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert boss.get(page_url(busy_lead)).status_code == 200
        return len(queries)

    before = count()
    session = chat_services.session_for_lead(lead=busy_lead)
    for index in range(5):
        say(session, f"question {index}: windshield price?")
        OutboundMessage.objects.create(
            lead=busy_lead, location=busy_lead.location, channel="sms",
            kind=MessageKind.STAFF, to=busy_lead.phone, body=f"note {index}",
            status="recorded",
        )  # fmt: skip
    assert count() == before


def test_pause_and_resume_the_follow_up(
    boss, customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        cadence.cadence_start(lead=customer)
    boss.post(action_url(customer, "pause"))
    assert (
        CadenceEnrollment.objects.get(lead=customer).status == EnrollmentStatus.PAUSED
    )
    assert "Resume the follow-up" in boss.get(page_url(customer)).content.decode()
    boss.post(action_url(customer, "resume"))
    assert (
        CadenceEnrollment.objects.get(lead=customer).status == EnrollmentStatus.ACTIVE
    )


def test_mark_lost_needs_a_reason(boss, customer):
    boss.post(action_url(customer, "lost"), {"reason": ""})
    customer.refresh_from_db()
    assert customer.status != LeadStatus.LOST
    boss.post(action_url(customer, "lost"), {"reason": "Went elsewhere"})
    customer.refresh_from_db()
    assert (customer.status, customer.lost_reason) == (
        LeadStatus.LOST,
        "Went elsewhere",
    )


def test_send_the_chat_link_by_sms_through_the_gate(boss, customer):
    response = boss.post(action_url(customer, "chat-link"), follow=True)
    sent = OutboundMessage.objects.get(kind=MessageKind.STAFF)
    assert sent.to == customer.phone
    token = sent.body.split("/c/")[1].split()[0]
    assert chat_services.chat_link_resolve(token=token).lead == customer
    assert ChatLink.objects.count() == 1
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [
        f"Chat link recorded (outbox, not sent) by SMS to {customer.phone}."
    ]


def test_a_blocked_chat_link_says_why(boss, tenant, customer):
    set_outbound_mode(tenant, "disabled")
    response = boss.post(action_url(customer, "chat-link"), follow=True)
    assert "was not sent: Outbound messaging is disabled" in response.content.decode()


def test_book_for_the_customer_links_to_the_booking_form(boss, customer):
    page = boss.get(page_url(customer)).content.decode()
    assert f"/admin/appointments/appointment/book/{customer.pk}/" in page


def test_actions_are_post_only(boss, customer):
    assert boss.get(action_url(customer, "lost")).status_code == 405


def test_location_staff_reach_only_their_locations_leads(tenant_client, store, clock):
    staff = UserFactory(username="store094", is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(codename__in=["view_lead", "change_lead"])
    )
    StaffMembershipFactory(user=staff, location=store)
    tenant_client.force_login(staff)
    mine = LeadFactory(location=store)
    theirs = LeadFactory(location=LocationFactory(name="Elsewhere"))
    assert tenant_client.get(page_url(mine)).status_code == 200
    assert tenant_client.get(page_url(theirs)).status_code == 302  # "does not exist"
    assert (
        tenant_client.post(action_url(theirs, "lost"), {"reason": "x"}).status_code
        == 404
    )
    theirs.refresh_from_db()
    assert theirs.status != LeadStatus.LOST
