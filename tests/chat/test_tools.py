"""The tools act for the session's own lead whatever arguments a model sends."""

from __future__ import annotations

import json

from django.core.cache import cache
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appointments.models import Appointment
from chat import services as chat_services
from chat.ai.base import ToolCall
from chat.ai.context import location_facts
from chat.ai.tools import TOOLS, ToolBinding, tool_run
from chat.models import ChatSession
from locations.models import LocationHours, ServiceCatalogItem
from tests.chat.conftest import say
from tests.factories import LeadFactory, LocationFactory, ServiceOverrideFactory

HOSTILE_KEYS = ["lead_id", "lead", "location_id", "tenant", "schema", "session_id"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)
arguments = st.dictionaries(
    st.sampled_from(
        [
            "service",
            "date",
            "days",
            "slot_id",
            "confirmed",
            "reason",
            "category",
            *HOSTILE_KEYS,
        ]
    ),
    json_values | st.sampled_from(["S1", "S2", "tint-sedan-ceramic", "2026-11-17"]),
    max_size=4,
)


def binding_for(session: ChatSession, message_id: int | None) -> ToolBinding:
    return ToolBinding(
        session_id=session.pk,
        lead_id=session.lead_id,
        location_id=session.lead.location_id,
        customer_message_id=message_id,
    )


def test_arguments_naming_another_lead_are_refused(session, store):
    other = LeadFactory(location=store)
    for name in TOOLS:
        outcome = tool_run(
            binding=binding_for(session, None),
            call=ToolCall(id="t", name=name, arguments={"lead_id": other.pk}),
        )
        assert outcome.is_error, name
        assert "take no customer, lead or location arguments" in outcome.as_text()


def test_unknown_tools_and_unreadable_arguments_are_explained(session):
    unknown = tool_run(
        binding=binding_for(session, None),
        call=ToolCall(id="t", name="drop_tables", arguments={}),
    )
    assert unknown.is_error
    assert "no tool named" in unknown.as_text()
    broken = tool_run(
        binding=binding_for(session, None),
        call=ToolCall(
            id="t", name="quote", arguments={}, arguments_error="Expecting value"
        ),
    )
    assert broken.is_error
    assert "not valid JSON" in broken.as_text()


def test_a_slot_offered_to_another_customer_cannot_be_booked(session, store, catalog):
    neighbour = chat_services.session_for_lead(
        lead=LeadFactory(location=store, first_name="Neighbour")
    )
    say(neighbour, "book ceramic tint tuesday")
    neighbour.refresh_from_db()
    assert neighbour.offered_slots
    posted = chat_services.customer_message_post(session=session, text="book S1")
    outcome = tool_run(
        binding=binding_for(session, posted.message.pk),
        call=ToolCall(id="t", name="book_appointment", arguments={"slot_id": "S1"}),
    )
    assert outcome.is_error
    assert "not offered" in outcome.as_text()
    assert not Appointment.objects.exists()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=st.sampled_from(sorted(TOOLS)), args=arguments)
def test_any_call_touches_only_the_bound_lead(session, store, catalog, name, args):
    # Each example runs in a savepoint that is rolled back: examples start alike.
    with transaction.atomic():
        _call_for_bound_lead(session, store, catalog, name, args)
        transaction.set_rollback(True)


def _call_for_bound_lead(session, store, catalog, name, args):
    session.refresh_from_db()  # the rolled-back example's counters are gone
    other_location = LocationFactory(name="Elsewhere")
    other = LeadFactory(
        location=other_location,
        first_name="Zebulon",
        email="zebulon@example.net",
        phone="+16195550177",
    )
    other_session = chat_services.session_for_lead(lead=other)
    ChatSession.objects.filter(pk=other_session.pk).update(
        offered_slots=[{"id": "S1", "service_id": catalog[0].pk, "start": "x"}]
    )
    say(session, "book ceramic tint tuesday")
    posted = chat_services.customer_message_post(
        session=session, text="yes", client_id=f"c-{name}-{json.dumps(args)[:40]}"
    )
    outcome = tool_run(
        binding=binding_for(session, posted.message.pk),
        call=ToolCall(id="t", name=name, arguments=args),
    )
    text = outcome.as_text()
    assert "zebulon" not in text.lower()
    assert "Elsewhere" not in text
    assert not Appointment.objects.filter(lead=other).exists()
    assert not Appointment.objects.exclude(lead=session.lead).exists()
    other_session.refresh_from_db()
    assert other_session.mode == "assistant"
    assert other_session.offered_slots[0]["id"] == "S1"
    if set(args) & set(HOSTILE_KEYS):
        assert outcome.is_error


def quoted_price(session, service: str) -> str:
    outcome = tool_run(
        binding=binding_for(session, None),
        call=ToolCall(id="q", name="quote", arguments={"service": service}),
    )
    return outcome.content["service"]["price"]


def test_the_tools_quote_from_the_cached_catalog_until_a_change_is_committed(
    session, store, catalog, settings, django_capture_on_commit_callbacks
):
    settings.CHAT_CONTEXT_CACHE_SECONDS = 300
    cache.clear()
    windshield, film = catalog[1], catalog[2]
    assert quoted_price(session, "Windshield tint") == "$199.00"

    # A write that bypasses the models' signals is not seen: the quote is cached.
    ServiceCatalogItem.objects.filter(pk=windshield.pk).update(price_cents=1)
    assert quoted_price(session, "Windshield tint") == "$199.00"

    with django_capture_on_commit_callbacks() as uncommitted:
        ServiceOverrideFactory(item=windshield, location=store, price_cents=24900)
    assert quoted_price(session, "Windshield tint") == "$199.00"
    for callback in uncommitted:
        callback()
    assert quoted_price(session, "Windshield tint") == "$249.00"

    # A brand-wide price reaches every location's answers.
    with django_capture_on_commit_callbacks(execute=True):
        film.price_cents = 139900
        film.save()
    assert quoted_price(session, "Paint protection film") == "$1,399.00"

    # And so do the opening hours the instructions show.
    assert "Monday: closed" not in location_facts(store).hours
    with django_capture_on_commit_callbacks(execute=True):
        LocationHours.objects.filter(location=store, weekday=0).get().delete()
    assert "Monday: closed" in location_facts(store).hours
