"""The offline assistant end to end through the service: prices, slots, booking."""

from __future__ import annotations

from decimal import Decimal

from appointments.models import Appointment, AppointmentStatus
from chat.models import ChatMessage, MessageRole, SessionMode
from leads.models import LeadStatus
from tests.chat.conftest import say


def test_price_question_answers_the_catalog_price(session, settings):
    settings.AI_PROVIDER = "auto"
    answer = say(session, "How much is ceramic tint for my sedan?")
    assert "$449.00" in answer.body
    assert answer.provider == "scripted"
    assert answer.cost == Decimal(0)
    assert answer.latency_ms is not None
    assert [c["name"] for r in answer.tool_calls for c in r["calls"]] == ["quote"]


def test_unknown_service_lists_what_is_offered(session):
    answer = say(session, "What services do you have?")
    for price in ("$449.00", "$199.00", "$1,299.00"):
        assert price in answer.body


def test_first_message_engages_the_lead_and_stops_the_cadence(session, customer):
    say(session, "hello")
    customer.refresh_from_db()
    assert customer.status == LeadStatus.ENGAGED


def test_offer_then_confirm_books_the_chosen_slot(session, customer):
    offer = say(session, "Can I book ceramic tint on Tuesday?")
    slots = offer.data["slots"]
    assert slots, offer.body
    assert all(s["label"] in offer.body for s in slots)
    assert not Appointment.objects.filter(lead=customer).exists()

    second = slots[1]
    booked = say(session, "2")
    appointment = Appointment.objects.get(lead=customer)
    assert appointment.status == AppointmentStatus.BOOKED
    assert appointment.starts_at.isoformat() == second["start"]
    assert booked.data["appointment"]["id"] == appointment.pk
    assert "You're booked" in booked.body
    customer.refresh_from_db()
    assert customer.status == LeadStatus.APPOINTMENT_SET


def test_asking_for_a_person_hands_over_and_the_assistant_stops(session):
    say(session, "Can I talk to a real person please?")
    session.refresh_from_db()
    assert session.mode == SessionMode.HUMAN
    assert session.waiting_since is not None
    assert say(session, "hello?") is None
    assert (
        ChatMessage.objects.filter(session=session, role=MessageRole.ASSISTANT).count()
        == 1
    )


def test_cancel_needs_a_yes_in_a_later_message(session, customer):
    say(session, "book ceramic tint tuesday")
    say(session, "first")
    appointment = Appointment.objects.get(lead=customer)
    ask = say(session, "I need to cancel my appointment")
    assert "Reply yes" in ask.body
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED
    say(session, "yes")
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED
