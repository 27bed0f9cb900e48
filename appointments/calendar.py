"""The staff calendar of a location: each day's hours, closures and appointments, laid out by bay.

Reads (three queries for any number of days) and layout only; the admin renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import QuerySet
from django.urls import reverse

from appointments.models import Appointment, AppointmentStatus
from locations.models import Closure, Location, LocationHours

#: The calendar's row height.
ROW_MINUTES = 30
DAY_MINUTES = 24 * 60


def local_display(moment: datetime | None, zone: ZoneInfo) -> str:
    """A moment as the location's clock shows it, e.g. 'Tue Nov 17, 2026 10:00 AM PST'."""
    if moment is None:
        return "-"
    return f"{moment.astimezone(zone):%a %b %d, %Y %I:%M %p %Z}"


def appointment_label(appointment: Appointment) -> str:
    """How refusals and confirmations name an appointment: its customer and local start."""
    zone = appointment.location.zone
    return f"{appointment.lead}, {local_display(appointment.starts_at, zone)}"


def parse_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value or "")
    except ValueError:
        return None


@dataclass(frozen=True)
class CalendarEntry:
    """One appointment on a local day, in minutes since that day's midnight."""

    appointment: Appointment
    start_minute: int
    end_minute: int
    time_label: str
    url: str


@dataclass
class DayPlan:
    day: date
    opens: int | None  # minutes since midnight; None when closed
    closes: int | None
    notice: str  # why the location is closed that day, or ""
    entries: list[CalendarEntry] = field(default_factory=list)  # not cancelled
    cancelled: list[CalendarEntry] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.day:%A, %B %d, %Y}"


@dataclass
class GridCell:
    rowspan: int = 1
    entries: list[CalendarEntry] = field(default_factory=list)
    is_open: bool = True


@dataclass
class GridRow:
    label: str
    cells: list[GridCell]


def _clock(minute: int) -> str:
    return f"{time(minute // 60, minute % 60):%I:%M %p}"


def _minute_of(moment: datetime, day: date, zone: ZoneInfo) -> int:
    local = moment.astimezone(zone)
    if local.date() < day:
        return 0
    if local.date() > day:
        return DAY_MINUTES
    return local.hour * 60 + local.minute


def calendar_days(
    appointments: QuerySet[Appointment], location: Location, first: date, count: int
) -> list[DayPlan]:
    """``count`` local days from ``first``: hours, closures and appointments (three queries)."""
    zone = location.zone
    last = first + timedelta(days=count - 1)
    hours = {h.weekday: h for h in LocationHours.objects.filter(location=location)}
    closures = list(
        Closure.objects.filter(
            location=location, starts_on__lte=last, ends_on__gte=first
        )
    )
    plans = []
    for offset in range(count):
        day = first + timedelta(days=offset)
        closure = next((c for c in closures if c.starts_on <= day <= c.ends_on), None)
        row = hours.get(day.weekday())
        if closure is not None:
            plan = DayPlan(day, None, None, f"Closed: {closure.reason or 'closure'}.")
        elif row is None or row.is_closed:
            plan = DayPlan(day, None, None, f"Closed on {day:%A}s.")
        else:
            opens = row.opens_at.hour * 60 + row.opens_at.minute
            closes = row.closes_at.hour * 60 + row.closes_at.minute
            plan = DayPlan(day, opens, closes, "")
        plans.append(plan)
    window = appointments.filter(
        location=location,
        starts_at__gte=datetime.combine(first, time.min, tzinfo=zone),
        starts_at__lt=datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone),
    ).select_related("lead", "service")
    by_day = {plan.day: plan for plan in plans}
    for appointment in window.order_by("starts_at", "bay"):
        day = appointment.starts_at.astimezone(zone).date()
        plan = by_day.get(day)
        if plan is None:
            continue
        start = _minute_of(appointment.starts_at, day, zone)
        end = max(start + 1, _minute_of(appointment.ends_at, day, zone))
        starts_local = appointment.starts_at.astimezone(zone)
        ends_local = appointment.ends_at.astimezone(zone)
        entry = CalendarEntry(
            appointment=appointment,
            start_minute=start,
            end_minute=end,
            time_label=f"{starts_local:%I:%M %p} - {ends_local:%I:%M %p}",
            url=reverse("admin:appointments_appointment_change", args=[appointment.pk]),
        )
        if appointment.status == AppointmentStatus.CANCELLED:
            plan.cancelled.append(entry)
        else:
            plan.entries.append(entry)
    return plans


@dataclass
class _Span:
    start_row: int
    end_row: int
    entries: list[CalendarEntry]


def day_grid(plan: DayPlan, bays: int) -> tuple[list[int], list[GridRow]]:
    """The day as rows of ``ROW_MINUTES`` and one column per bay.

    Rows run from opening to closing, widened to any appointment outside them. Each
    appointment's cell spans its rows; appointments overlapping in one bay (a no-show
    and the booking made after it, say) share a cell.
    """
    starts = [e.start_minute for e in plan.entries]
    ends = [e.end_minute for e in plan.entries]
    if plan.opens is not None and plan.closes is not None:
        starts.append(plan.opens)
        ends.append(plan.closes)
    if not starts:
        return [], []
    first = min(starts) // ROW_MINUTES * ROW_MINUTES
    last = -(-max(ends) // ROW_MINUTES) * ROW_MINUTES
    row_count = (last - first) // ROW_MINUTES
    columns = list(
        range(1, max([bays, *(e.appointment.bay for e in plan.entries)]) + 1)
    )

    def is_open(row: int) -> bool:
        minute = first + row * ROW_MINUTES
        return plan.opens is not None and plan.opens <= minute < (plan.closes or 0)

    rows = [GridRow(_clock(first + i * ROW_MINUTES), []) for i in range(row_count)]
    for bay in columns:
        spans: list[_Span] = []
        for entry in (e for e in plan.entries if e.appointment.bay == bay):
            start_row = (entry.start_minute - first) // ROW_MINUTES
            end_row = max(start_row + 1, -(-(entry.end_minute - first) // ROW_MINUTES))
            if spans and start_row < spans[-1].end_row:
                spans[-1].end_row = max(spans[-1].end_row, end_row)
                spans[-1].entries.append(entry)
            else:
                spans.append(_Span(start_row, end_row, [entry]))
        row = 0
        for span in spans:
            for empty in range(row, span.start_row):
                rows[empty].cells.append(GridCell(is_open=is_open(empty)))
            rows[span.start_row].cells.append(
                GridCell(rowspan=span.end_row - span.start_row, entries=span.entries)
            )
            row = span.end_row
        for empty in range(row, row_count):
            rows[empty].cells.append(GridCell(is_open=is_open(empty)))
    return columns, rows
