"""Booking, moving, cancelling and no-shows, with everything that follows each."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django_tenants.utils import tenant_context

from appointments import services
from appointments.models import (
    Appointment,
    AppointmentStatus,
    ScheduledKind,
    ScheduledMessage,
    ScheduledStatus,
)
from leadorch.errors import ApplicationError
from leads.models import LeadStatus
from locations.models import ServiceOverride
from messaging.models import Channel, MessageKind, OutboundMessage
from tests.appointments.conftest import NOW, TUESDAY_10
from tests.factories import LeadFactory
from touchpoints import services as cadence
from touchpoints.models import CadenceEnrollment, TouchPoint, TouchPointStatus


def test_booking_takes_a_bay_and_sets_the_lead(
    live, customer, tint, django_capture_on_commit_callbacks
):
    cadence.cadence_start(lead=customer, now=NOW)

    with (
        time_machine.travel(NOW, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        appointment = services.appointment_book(
            lead=customer, service=tint, starts_at=TUESDAY_10, source="chat"
        )

    appointment.refresh_from_db()
    assert (appointment.bay, appointment.starts_at, appointment.ends_at) == (
        1,
        TUESDAY_10,
        TUESDAY_10 + timedelta(hours=2),
    )
    assert (appointment.status, appointment.price_cents, appointment.source) == (
        AppointmentStatus.BOOKED,
        44900,
        "chat",
    )
    customer.refresh_from_db()
    assert customer.status == LeadStatus.APPOINTMENT_SET
    assert customer.booked_at is not None
    # the cadence stopped, with its reason
    assert CadenceEnrollment.objects.get(lead=customer).stop_reason == "booked"
    assert not TouchPoint.objects.filter(
        lead=customer, status=TouchPointStatus.SCHEDULED
    ).exists()
    # the confirmation went through the gate on both channels
    confirmations = OutboundMessage.objects.filter(
        lead=customer, kind=MessageKind.CONFIRMATION
    )
    assert sorted(confirmations.values_list("channel", flat=True)) == [
        Channel.EMAIL,
        Channel.SMS,
    ]
    sms = confirmations.get(channel=Channel.SMS).body
    assert "Tuesday, November 17 at 10:00 AM" in sms
    assert "Ceramic tint, sedan ($449.00)" in sms
    assert "/c/" in sms
    # the reminder: 10:00 local the day before, both channels
    reminders = ScheduledMessage.objects.filter(
        appointment=appointment, kind=ScheduledKind.REMINDER
    )
    assert {r.due_at for r in reminders} == {TUESDAY_10 - timedelta(days=1)}
    assert reminders.count() == 2


def test_the_location_price_and_duration_apply(live, customer, tint):
    ServiceOverride.objects.create(
        item=tint, location=customer.location, price_cents=47900, duration_minutes=180
    )

    with time_machine.travel(NOW, tick=False):
        appointment = services.appointment_book(
            lead=customer, service=tint, starts_at=TUESDAY_10, source="staff"
        )

    assert appointment.price_cents == 47900
    assert appointment.ends_at - appointment.starts_at == timedelta(hours=3)


def test_a_time_outside_the_slots_is_refused_with_alternatives(live, customer, tint):
    with (
        time_machine.travel(NOW, tick=False),
        pytest.raises(services.SlotTakenError) as refused,
    ):
        services.appointment_book(
            lead=customer,
            service=tint,
            starts_at=TUESDAY_10 + timedelta(hours=7),
            source="chat",
        )  # 17:00

    assert refused.value.alternatives
    assert "That time is taken. Free nearby:" in refused.value.message
    assert not Appointment.objects.exists()


def test_one_active_booking_per_lead_unless_staff_book_more(live, customer, tint):
    with time_machine.travel(NOW, tick=False):
        services.appointment_book(
            lead=customer, service=tint, starts_at=TUESDAY_10, source="chat"
        )
        with pytest.raises(ApplicationError, match="already has an appointment"):
            services.appointment_book(
                lead=customer,
                service=tint,
                starts_at=TUESDAY_10 + timedelta(days=1),
                source="chat",
            )
        extra = services.appointment_book(
            lead=customer,
            service=tint,
            starts_at=TUESDAY_10 + timedelta(days=1),
            source="staff",
            additional=True,
        )

    assert extra.is_additional
    assert (
        Appointment.objects.filter(
            lead=customer, status=AppointmentStatus.BOOKED
        ).count()
        == 2
    )


def test_the_database_refuses_overlapping_bookings_of_one_bay(
    live, customer, tint, store
):
    with time_machine.travel(NOW, tick=False):
        first = services.appointment_book(
            lead=customer, service=tint, starts_at=TUESDAY_10, source="chat"
        )
    other = LeadFactory(location=store)

    with (
        pytest.raises(IntegrityError, match="appointments_no_double_booking"),
        transaction.atomic(),
    ):
        Appointment.objects.create(
            lead=other, location=store, service=tint, bay=first.bay, starts_at=TUESDAY_10 + timedelta(minutes=30),
            ends_at=TUESDAY_10 + timedelta(hours=1), source="staff", price_cents=1,
        )  # fmt: skip
    # a cancelled booking no longer holds the bay
    Appointment.objects.filter(pk=first.pk).update(status=AppointmentStatus.CANCELLED)
    Appointment.objects.create(
        lead=other, location=store, service=tint, bay=first.bay, starts_at=TUESDAY_10, ends_at=TUESDAY_10 + timedelta(hours=1),
        source="staff", price_cents=1,
    )  # fmt: skip


def test_reschedule_moves_the_reminder(
    live, customer, tint, django_capture_on_commit_callbacks
):
    with (
        time_machine.travel(NOW, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        appointment = services.appointment_book(
            lead=customer, service=tint, starts_at=TUESDAY_10, source="chat"
        )
        moved = services.appointment_reschedule(
            appointment=appointment, starts_at=TUESDAY_10 + timedelta(days=2)
        )

    assert moved.starts_at == TUESDAY_10 + timedelta(days=2)
    live_reminders = ScheduledMessage.objects.filter(
        appointment=appointment, status=ScheduledStatus.SCHEDULED
    )
    assert {r.due_at for r in live_reminders} == {TUESDAY_10 + timedelta(days=1)}
    assert (
        ScheduledMessage.objects.filter(
            appointment=appointment, status=ScheduledStatus.CANCELLED
        ).count()
        == 2
    )
    moved_sms = (
        OutboundMessage.objects.filter(
            lead=customer, kind=MessageKind.CONFIRMATION, channel=Channel.SMS
        )
        .order_by("pk")
        .last()
    )
    assert "moved to Thursday, November 19 at 10:00 AM" in moved_sms.body


def test_cancel_frees_the_slot_and_engages_the_lead_again(
    live, customer, tint, django_capture_on_commit_callbacks
):
    with (
        time_machine.travel(NOW, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        appointment = services.appointment_book(
            lead=customer, service=tint, starts_at=TUESDAY_10, source="chat"
        )
        services.appointment_cancel(appointment=appointment, reason="Changed plans")

    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED
    customer.refresh_from_db()
    assert customer.status == LeadStatus.ENGAGED
    assert not ScheduledMessage.objects.filter(
        appointment=appointment, status=ScheduledStatus.SCHEDULED
    ).exists()
    cancelled_sms = (
        OutboundMessage.objects.filter(lead=customer, channel=Channel.SMS)
        .order_by("pk")
        .last()
    )
    assert "is cancelled" in cancelled_sms.body


def test_no_show_starts_a_short_rebooking_follow_up(live, customer, tint):
    with time_machine.travel(NOW, tick=False):
        appointment = services.appointment_book(
            lead=customer, service=tint, starts_at=TUESDAY_10, source="chat"
        )
    with pytest.raises(ApplicationError, match="has not started"):
        services.appointment_mark_no_show(
            appointment=appointment, now=TUESDAY_10 - timedelta(hours=1)
        )

    services.appointment_mark_no_show(
        appointment=appointment, now=TUESDAY_10 + timedelta(hours=1)
    )

    customer.refresh_from_db()
    assert customer.status == LeadStatus.ENGAGED
    rebooking = ScheduledMessage.objects.filter(
        lead=customer, kind=ScheduledKind.REBOOKING
    ).order_by("due_at")
    assert [r.due_at for r in rebooking] == [
        TUESDAY_10 + timedelta(hours=4),
        TUESDAY_10 + timedelta(days=2, hours=1),
    ]
    assert not ScheduledMessage.objects.filter(
        kind=ScheduledKind.REMINDER, status=ScheduledStatus.SCHEDULED
    ).exists()


def test_due_reminders_go_through_the_gate(live, customer, tint):
    from appointments import notifications

    with time_machine.travel(NOW, tick=False):
        appointment = services.appointment_book(
            lead=customer, service=tint, starts_at=TUESDAY_10, source="chat"
        )

    sent = notifications.scheduled_send_due(now=TUESDAY_10 - timedelta(days=1))

    assert sent == 2
    reminder_sms = OutboundMessage.objects.get(
        lead=customer, kind=MessageKind.REMINDER, channel=Channel.SMS
    )
    assert reminder_sms.body.startswith(
        "Reminder from Store094: Ceramic tint, sedan tomorrow, Tuesday, November 17 at 10:00 AM"
    )
    assert set(
        ScheduledMessage.objects.filter(appointment=appointment).values_list(
            "status", flat=True
        )
    ) == {ScheduledStatus.DONE}


def test_a_hundred_attempts_on_one_slot_with_three_bays_make_three_bookings(
    tenant_tx, settings
):
    # given: a 3-bay store and 100 customers who all want Tuesday 10:00
    from datetime import time as clock

    from locations.models import LocationHours
    from tests.factories import LocationFactory, ServiceCatalogItemFactory
    from tests.touchpoints.conftest import set_outbound_mode

    settings.MESSAGING_BACKEND = "outbox"
    set_outbound_mode(tenant_tx, "live")
    store = LocationFactory(time_zone="America/Los_Angeles", region="CA", bays=3)
    LocationHours.objects.create(
        location=store, weekday=1, opens_at=clock(9), closes_at=clock(18)
    )
    tint = ServiceCatalogItemFactory(duration_minutes=120)
    leads = [LeadFactory(location=store) for _ in range(100)]
    outcomes: list = [None] * 100
    barrier = threading.Barrier(100)

    def attempt(index: int) -> None:
        try:
            with tenant_context(tenant_tx), time_machine.travel(NOW, tick=False):
                barrier.wait()
                try:
                    services.appointment_book(
                        lead=leads[index],
                        service=tint,
                        starts_at=TUESDAY_10,
                        source="chat",
                    )
                    outcomes[index] = "booked"
                except services.SlotTakenError as refused:
                    outcomes[index] = ("taken", len(refused.alternatives))
        except Exception as error:  # any other exception fails the test below
            outcomes[index] = error
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert outcomes.count("booked") == 3
    refusals = [o for o in outcomes if isinstance(o, tuple)]
    assert len(refusals) == 97
    assert all(
        count > 0 for _, count in refusals
    )  # each refusal names other free times
    booked = Appointment.objects.filter(
        starts_at=TUESDAY_10, status=AppointmentStatus.BOOKED
    )
    assert sorted(booked.values_list("bay", flat=True)) == [1, 2, 3]
