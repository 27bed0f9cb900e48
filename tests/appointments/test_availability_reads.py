"""What free times are computed from, read in hand-written SQL, equals the ORM's reading."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from appointments import services
from appointments.models import Appointment, AppointmentStatus
from locations.models import Closure, LocationHours
from tests.appointments.conftest import TUESDAY_10
from tests.factories import LeadFactory, LocationFactory


def _book(lead, location, service, starts_at, *, bay=1, status="booked"):
    return Appointment.objects.create(
        lead=lead, location=location, service=service, bay=bay, starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=2), status=status, source="chat",
        price_cents=44900,
    )  # fmt: skip


def test_hours_closures_and_bookings_are_read_as_the_orm_reads_them(
    store, customer, tint
):
    elsewhere = LocationFactory(name="Other store")
    mine = _book(customer, store, tint, TUESDAY_10)
    other = _book(LeadFactory(location=store), store, tint, TUESDAY_10, bay=2)
    _book(LeadFactory(location=store), store, tint, TUESDAY_10 + timedelta(hours=3),
          status=AppointmentStatus.CANCELLED)  # fmt: skip
    _book(LeadFactory(location=elsewhere), elsewhere, tint, TUESDAY_10)
    _book(LeadFactory(location=store), store, tint, TUESDAY_10 + timedelta(days=9))
    Closure.objects.create(
        location=store, starts_on=date(2026, 11, 19), ends_on=date(2026, 11, 20)
    )
    Closure.objects.create(
        location=store, starts_on=date(2026, 12, 24), ends_on=date(2026, 12, 25)
    )

    def reads(exclude_id=None):
        return services._availability_reads(
            location_id=store.pk,
            window_start=datetime(2026, 11, 16, 8, tzinfo=store.zone),
            window_end=datetime(2026, 11, 21, 20, tzinfo=store.zone),
            date_from=date(2026, 11, 16),
            date_to=date(2026, 11, 21),
            exclude_id=exclude_id,
        )

    hours, closures, busy = reads()

    assert hours == {
        h.weekday: None if h.is_closed else (h.opens_at, h.closes_at)
        for h in LocationHours.objects.filter(location=store)
    }
    assert None in hours.values()  # the closed day reads as closed
    assert closures == [(date(2026, 11, 19), date(2026, 11, 20))]
    assert sorted((b.start, b.end, b.bay) for b in busy) == [
        (TUESDAY_10, TUESDAY_10 + timedelta(hours=2), 1),
        (TUESDAY_10, TUESDAY_10 + timedelta(hours=2), 2),
    ]
    assert all(b.start.tzinfo is not None for b in busy)

    _, _, moving = reads(exclude_id=mine.pk)
    assert [(b.bay, b.start) for b in moving] == [(other.bay, other.starts_at)]
