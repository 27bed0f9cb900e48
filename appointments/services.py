"""Booking, moving and cancelling appointments, and what follows each."""

from __future__ import annotations

import functools
import logging
import random
import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from appointments.availability import Busy, Slot, slots_compute
from appointments.models import (
    Appointment,
    AppointmentStatus,
    CrmSyncStatus,
    ScheduledKind,
    ScheduledMessage,
    ScheduledStatus,
)
from leadorch import sql
from leadorch.errors import ApplicationError
from leadorch.tasks import enqueue_on_commit
from leads import services as lead_services
from leads.models import Lead, LeadStatus
from locations import selectors as location_selectors
from locations.models import Closure, Location, LocationHours, ServiceCatalogItem
from messaging.models import Channel
from touchpoints import services as cadence
from touchpoints.models import StopReason

logger = logging.getLogger(__name__)

REMINDER_LOCAL_TIME = time(10, 0)
DEADLOCK_RETRIES = 5
# First key of the per-location booking lock: pg_advisory_xact_lock(namespace, location id).
BOOKING_LOCK_NAMESPACE = 4242
# deadlock detected, serialization failure
RETRYABLE_SQLSTATES = {"40P01", "40001"}
# A no-show is offered a new time twice: a few hours later, then two days later.
REBOOKING_DELAYS = (timedelta(hours=3), timedelta(days=2))


class SlotTakenError(ApplicationError):
    """The time asked for is not (or no longer) free; carries the nearest free times."""

    def __init__(self, *, alternatives: list[Slot], zone: str) -> None:
        from zoneinfo import ZoneInfo

        local = [slot.start.astimezone(ZoneInfo(zone)) for slot in alternatives]
        super().__init__(
            "That time is taken."
            + (
                f" Free nearby: {', '.join(f'{t:%a %b %d %I:%M %p}' for t in local)}."
                if local
                else ""
            ),
            code="slot_taken",
            extra={"alternatives": [slot.start.isoformat() for slot in alternatives]},
        )
        self.alternatives = alternatives


@dataclass(frozen=True)
class Offer:
    """A service as a location sells it: its own price and duration."""

    item: ServiceCatalogItem
    price_cents: int
    duration: timedelta


def offer_get(*, location: Location, service: ServiceCatalogItem) -> Offer:
    item = (
        location_selectors.service_list_for_location(location=location)
        .filter(pk=service.pk)
        .first()
    )
    if item is None:
        raise ApplicationError(
            f"{service.name} is not offered at {location.name}.", code="not_offered"
        )
    return Offer(
        item=item,
        price_cents=item.effective_price_cents,
        duration=timedelta(minutes=item.effective_duration_minutes),
    )


def availability_for(
    *,
    location: Location,
    date_from: date,
    date_to: date,
    service: ServiceCatalogItem | None = None,
    now: datetime | None = None,
    exclude: Appointment | None = None,
    duration: timedelta | None = None,
) -> list[Slot]:
    """Free slots of ``service`` at ``location`` between two local dates (inclusive).

    The one availability service behind the chat tools, the API and the admin.
    ``duration``, when the caller has the service's duration at the location
    already, stands for ``service``. ``exclude`` leaves one appointment out (when
    moving it).
    """
    now = now or timezone.now()
    if duration is None:
        if service is None:
            raise TypeError("availability_for needs the service or its duration")
        duration = offer_get(location=location, service=service).duration
    zone = location.zone
    window_start = datetime.combine(date_from, time.min, tzinfo=zone) - timedelta(
        days=1
    )
    window_end = datetime.combine(date_to, time.max, tzinfo=zone) + timedelta(days=1)
    hours, closures, busy = _availability_reads(
        location_id=location.pk,
        window_start=window_start,
        window_end=window_end,
        date_from=date_from,
        date_to=date_to,
        exclude_id=exclude.pk if exclude is not None else None,
    )
    return slots_compute(
        zone=location.time_zone,
        hours=hours,
        closures=closures,
        bays=location.bays,
        duration=duration,
        busy=busy,
        now=now,
        date_from=date_from,
        date_to=date_to,
        min_notice=timedelta(minutes=settings.BOOKING_MIN_NOTICE_MINUTES),
        step=timedelta(minutes=settings.BOOKING_SLOT_STEP_MINUTES),
        buffer=timedelta(minutes=settings.BOOKING_BUFFER_MINUTES),
    )


def _availability_reads(
    *,
    location_id: int,
    window_start: datetime,
    window_end: datetime,
    date_from: date,
    date_to: date,
    exclude_id: int | None,
) -> tuple[dict[int, tuple[time, time] | None], list[tuple[date, date]], list[Busy]]:
    """What free times are computed from: the weekly hours (weekday -> opening and
    closing, None when closed), the closures overlapping the dates and the booked
    intervals overlapping the window (less ``exclude_id``).

    Every offer of times in the chat reads these, so the three statements are
    written once (leadorch.sql) and sent on one cursor. Booked times come as epoch
    seconds: parsing thousands of timestamps from text is most of a busy
    location's availability call otherwise.
    """
    hours_sql, closures_sql, busy_sql = _availability_sql()
    with connection.cursor() as cursor:
        cursor.execute(hours_sql, [location_id])
        hours = {
            weekday: None if is_closed else (opens_at, closes_at)
            for weekday, opens_at, closes_at, is_closed in cursor.fetchall()
        }
        cursor.execute(closures_sql, [location_id, date_from, date_to])
        closures = [tuple(row) for row in cursor.fetchall()]
        cursor.execute(
            busy_sql,
            [
                location_id,
                AppointmentStatus.BOOKED.value,
                window_end,
                window_start,
                exclude_id,
            ],
        )
        busy = [
            Busy(
                datetime.fromtimestamp(start, UTC),
                datetime.fromtimestamp(end, UTC),
                bay,
            )
            for start, end, bay in cursor.fetchall()
        ]
    return hours, closures, busy


@functools.cache
def _availability_sql() -> tuple[str, str, str]:
    q = sql.quote

    def columns(model: Any, *names: str) -> list[str]:
        return [sql.column(model, name) for name in names]

    weekday, opens_at, closes_at, is_closed, hours_location = columns(
        LocationHours, "weekday", "opens_at", "closes_at", "is_closed", "location"
    )
    starts_on, ends_on, closure_location = columns(
        Closure, "starts_on", "ends_on", "location"
    )
    pk, starts_at, ends_at, bay, location, status = columns(
        Appointment, "id", "starts_at", "ends_at", "bay", "location", "status"
    )
    # Quoted identifiers of our models only; every value is a parameter.
    hours = (
        f"SELECT {weekday}, {opens_at}, {closes_at}, {is_closed} "  # noqa: S608 - see above
        f"FROM {q(LocationHours._meta.db_table)} WHERE {hours_location} = %s"
    )
    closures = (
        f"SELECT {starts_on}, {ends_on} FROM {q(Closure._meta.db_table)} "  # noqa: S608 - see above
        f"WHERE {closure_location} = %s AND {ends_on} >= %s AND {starts_on} <= %s"
    )
    busy = (
        f"SELECT EXTRACT(EPOCH FROM {starts_at})::float8, "  # noqa: S608 - see above
        f"EXTRACT(EPOCH FROM {ends_at})::float8, {bay} "
        f"FROM {q(Appointment._meta.db_table)} "
        f"WHERE {location} = %s AND {status} = %s AND {starts_at} < %s "
        f"AND {ends_at} > %s AND {pk} IS DISTINCT FROM %s"
    )
    return hours, closures, busy


def _slot_at(
    *,
    location: Location,
    service: ServiceCatalogItem,
    starts_at: datetime,
    now: datetime,
    duration: timedelta,
    exclude: Appointment | None = None,
) -> tuple[Slot | None, list[Slot]]:
    """The free slot starting at ``starts_at`` (or None) and the nearest alternatives."""
    local_day = starts_at.astimezone(location.zone).date()
    slots = availability_for(
        location=location, service=service, date_from=local_day - timedelta(days=1), date_to=local_day + timedelta(days=7),
        now=now, exclude=exclude, duration=duration,
    )  # fmt: skip
    match = next((slot for slot in slots if slot.start == starts_at), None)
    nearest = sorted(
        slots, key=lambda slot: abs((slot.start - starts_at).total_seconds())
    )[:3]
    return match, sorted(nearest, key=lambda slot: slot.start)


def appointment_book(
    *,
    lead: Lead,
    service: ServiceCatalogItem,
    starts_at: datetime,
    source: str,
    actor: Any = None,
    notes: str = "",
    additional: bool = False,
    now: datetime | None = None,
) -> Appointment:
    """Book ``service`` for ``lead`` at its location, at ``starts_at`` (a free slot's start).

    Picks a free bay; if another booking takes it first, the database's exclusion
    constraint refuses ours and the next free bay is tried. Raises SlotTakenError
    (with alternatives) when no bay is left, ApplicationError for a closed lead,
    a service not offered there, or a second booking unless ``additional`` (staff).
    Moves the lead to appointment_set, stops its cadence, and after commit sends
    the confirmation, schedules the reminder and syncs the CRM.
    """
    now = now or timezone.now()
    if not lead.is_open:
        raise ApplicationError(
            "This lead is closed; reopen it before booking.", code="lead_closed"
        )
    location = lead.location
    offer = offer_get(location=location, service=service)
    slot, alternatives = _slot_at(
        location=location,
        service=service,
        starts_at=starts_at,
        now=now,
        duration=offer.duration,
    )
    if slot is None:
        raise SlotTakenError(alternatives=alternatives, zone=location.time_zone)

    def write(bay: int) -> Appointment:
        appointment = Appointment.objects.create(
            lead=lead,
            location=location,
            service=service,
            bay=bay,
            starts_at=slot.start,
            ends_at=slot.end,
            source=source,
            price_cents=offer.price_cents,
            notes=notes,
            is_additional=additional,
            booked_by=actor if getattr(actor, "pk", None) else None,
        )
        _after_booking(appointment, actor=actor)
        return appointment

    try:
        booked = _first_free_bay(location, slot.free_bays, write)
    except IntegrityError as error:
        if "appointments_one_active_per_lead" in str(error):
            raise ApplicationError(
                "This customer already has an appointment; move it or cancel it first.",
                code="already_booked",
            ) from error
        raise
    if booked is not None:
        return booked
    _, alternatives = _slot_at(
        location=location,
        service=service,
        starts_at=starts_at,
        now=now,
        duration=offer.duration,
    )
    raise SlotTakenError(alternatives=alternatives, zone=location.time_zone)


def _first_free_bay(
    location: Location, bays: tuple[int, ...], write: Callable[[int], Appointment]
) -> Appointment | None:
    """Run ``write(bay)`` in a transaction for each bay in turn until one holds.

    Each attempt first takes the location's booking lock (a transaction-scoped
    advisory lock), so bookings at one location take turns: concurrent inserts
    checking the exclusion constraint against each other deadlock in storms
    otherwise. The constraint stays the guarantee: a bay taken by a booking that
    committed first trips it, and the next bay is tried. A deadlock or
    serialization failure from elsewhere is retried.
    """
    for bay in bays:
        for attempt in range(DEADLOCK_RETRIES):
            try:
                with transaction.atomic():
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT pg_advisory_xact_lock(%s, %s)",
                            [BOOKING_LOCK_NAMESPACE, location.pk],
                        )
                    return write(bay)
            except OperationalError as error:
                if (
                    getattr(error.__cause__, "sqlstate", "") not in RETRYABLE_SQLSTATES
                    or attempt == DEADLOCK_RETRIES - 1
                ):
                    raise
                clock.sleep(random.uniform(0.005, 0.05))  # noqa: S311 - jitter, not security
            except IntegrityError as error:
                if "appointments_no_double_booking" not in str(error):
                    raise
                logger.info("Bay %s taken meanwhile; trying the next one", bay)
                break
    return None


def _after_booking(appointment: Appointment, *, actor: Any) -> None:
    lead = appointment.lead
    lead_services.lead_advance(
        lead=lead,
        to_status=LeadStatus.APPOINTMENT_SET,
        actor=actor,
        reason="Appointment booked",
    )
    cadence.cadence_stop(lead=lead, reason=StopReason.BOOKED)
    _reminders_rebuild(appointment)
    enqueue_on_commit(
        "appointments.tasks.appointment_confirmation_send",
        appointment_id=appointment.pk,
        event="booked",
    )
    _sync_later(appointment)


def appointment_reschedule(
    *,
    appointment: Appointment,
    starts_at: datetime,
    actor: Any = None,
    now: datetime | None = None,
) -> Appointment:
    """Move a booked appointment to another free slot (any free bay)."""
    now = now or timezone.now()
    if appointment.status != AppointmentStatus.BOOKED:
        raise ApplicationError(
            "Only a booked appointment can be moved.", code="not_booked"
        )
    location = appointment.location
    duration = appointment.ends_at - appointment.starts_at
    slot, alternatives = _slot_at(
        location=location,
        service=appointment.service,
        starts_at=starts_at,
        now=now,
        duration=duration,
        exclude=appointment,
    )
    if slot is None:
        raise SlotTakenError(alternatives=alternatives, zone=location.time_zone)

    def move(bay: int) -> Appointment:
        locked = Appointment.objects.select_for_update().get(pk=appointment.pk)
        if locked.status != AppointmentStatus.BOOKED:
            raise ApplicationError(
                "Only a booked appointment can be moved.", code="not_booked"
            )
        locked.starts_at, locked.ends_at, locked.bay = slot.start, slot.end, bay
        locked.crm_sync_status = CrmSyncStatus.PENDING
        locked.save(
            update_fields=[
                "starts_at",
                "ends_at",
                "bay",
                "crm_sync_status",
                "updated_at",
            ]
        )
        lead_services.lead_add_note(
            lead=locked.lead,
            message=f"Appointment moved to {slot.start.astimezone(location.zone):%a %b %d %I:%M %p}",
            actor=actor,
        )
        _reminders_rebuild(locked)
        enqueue_on_commit(
            "appointments.tasks.appointment_confirmation_send",
            appointment_id=locked.pk,
            event="moved",
        )
        _sync_later(locked)
        return locked

    moved = _first_free_bay(location, slot.free_bays, move)
    if moved is not None:
        return moved
    _, alternatives = _slot_at(
        location=location,
        service=appointment.service,
        starts_at=starts_at,
        now=now,
        duration=duration,
        exclude=appointment,
    )
    raise SlotTakenError(alternatives=alternatives, zone=location.time_zone)


@transaction.atomic
def appointment_cancel(
    *, appointment: Appointment, reason: str = "", actor: Any = None
) -> Appointment:
    """Cancel a booked appointment: its reminder goes, the CRM is told, the lead is engaged again."""
    locked = Appointment.objects.select_for_update().get(pk=appointment.pk)
    if locked.status != AppointmentStatus.BOOKED:
        raise ApplicationError(
            "Only a booked appointment can be cancelled.", code="not_booked"
        )
    locked.status = AppointmentStatus.CANCELLED
    locked.cancelled_at = timezone.now()
    locked.cancel_reason = reason[:200]
    locked.crm_sync_status = CrmSyncStatus.PENDING
    locked.save(
        update_fields=[
            "status",
            "cancelled_at",
            "cancel_reason",
            "crm_sync_status",
            "updated_at",
        ]
    )
    _scheduled_cancel(locked, "Appointment cancelled")
    if not Appointment.objects.filter(
        lead=locked.lead, status=AppointmentStatus.BOOKED
    ).exists():
        lead = locked.lead
        if lead.status == LeadStatus.APPOINTMENT_SET:
            lead_services.lead_transition(
                lead=lead,
                to_status=LeadStatus.ENGAGED,
                actor=actor,
                reason="Appointment cancelled",
            )
    enqueue_on_commit(
        "appointments.tasks.appointment_confirmation_send",
        appointment_id=locked.pk,
        event="cancelled",
    )
    _sync_later(locked)
    return locked


@transaction.atomic
def appointment_complete(*, appointment: Appointment, actor: Any = None) -> Appointment:
    locked = Appointment.objects.select_for_update().get(pk=appointment.pk)
    if locked.status != AppointmentStatus.BOOKED:
        raise ApplicationError(
            "Only a booked appointment can be completed.", code="not_booked"
        )
    locked.status = AppointmentStatus.COMPLETED
    locked.save(update_fields=["status", "updated_at"])
    _scheduled_cancel(locked, "Appointment completed")
    lead_services.lead_advance(
        lead=locked.lead,
        to_status=LeadStatus.COMPLETED,
        actor=actor,
        reason="Work completed",
    )
    return locked


@transaction.atomic
def appointment_mark_no_show(
    *, appointment: Appointment, actor: Any = None, now: datetime | None = None
) -> Appointment:
    """The customer did not come: the lead is engaged again and gets a short rebooking follow-up."""
    now = now or timezone.now()
    locked = Appointment.objects.select_for_update().get(pk=appointment.pk)
    if locked.status != AppointmentStatus.BOOKED:
        raise ApplicationError(
            "Only a booked appointment can be marked as a no-show.", code="not_booked"
        )
    if locked.starts_at > now:
        raise ApplicationError(
            "An appointment that has not started cannot be a no-show.",
            code="not_started",
        )
    locked.status = AppointmentStatus.NO_SHOW
    locked.save(update_fields=["status", "updated_at"])
    _scheduled_cancel(locked, "No-show")
    lead = locked.lead
    if lead.status == LeadStatus.APPOINTMENT_SET:
        lead_services.lead_transition(
            lead=lead, to_status=LeadStatus.ENGAGED, actor=actor, reason="No-show"
        )
    ScheduledMessage.objects.bulk_create(
        ScheduledMessage(
            lead=lead,
            appointment=locked,
            kind=ScheduledKind.REBOOKING,
            channel=Channel.SMS,
            due_at=now + delay,
        )
        for delay in REBOOKING_DELAYS
    )
    return locked


def reminder_due_at(appointment: Appointment) -> datetime:
    """10:00 local on the day before the appointment."""
    zone = appointment.location.zone
    local_day = appointment.starts_at.astimezone(zone).date() - timedelta(days=1)
    return datetime.combine(local_day, REMINDER_LOCAL_TIME, tzinfo=zone)


def _reminders_rebuild(appointment: Appointment) -> None:
    _scheduled_cancel(appointment, "Replaced", kind=ScheduledKind.REMINDER)
    due = reminder_due_at(appointment)
    if due <= timezone.now():
        return  # booked for tomorrow or sooner: the confirmation is the reminder
    ScheduledMessage.objects.bulk_create(
        ScheduledMessage(
            lead=appointment.lead,
            appointment=appointment,
            kind=ScheduledKind.REMINDER,
            channel=channel,
            due_at=due,
        )
        for channel in (Channel.SMS, Channel.EMAIL)
    )


def _scheduled_cancel(
    appointment: Appointment, reason: str, kind: str | None = None
) -> None:
    pending = ScheduledMessage.objects.filter(
        appointment=appointment, status=ScheduledStatus.SCHEDULED
    )
    if kind:
        pending = pending.filter(kind=kind)
    pending.update(status=ScheduledStatus.CANCELLED, reason=reason)


def _sync_later(appointment: Appointment) -> None:
    Appointment.objects.filter(pk=appointment.pk).update(
        crm_sync_status=CrmSyncStatus.PENDING, crm_next_attempt_at=timezone.now()
    )
    enqueue_on_commit(
        "appointments.tasks.appointment_crm_sync", appointment_id=appointment.pk
    )
