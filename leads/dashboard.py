"""The franchise dashboard's figures, each computed by one SQL aggregate.

Every selector takes ``(user, date_from, date_to, location_ids=None)`` and sees
only the locations the user may see: ``location_ids`` narrows the choice and is
intersected with the user's locations, so a location-limited user who asks for
another location's id gets nothing of it.

Definitions:

- Days and the period are calendar days in Django's ``TIME_ZONE`` (the default
  time zone, UTC unless configured): a period from D1 to D2 covers
  ``[D1 00:00, D2 + 1 day 00:00)`` in that zone, and per-day rows are
  ``TruncDate`` in that zone. (Locations sit in several zones; one brand-wide
  calendar keeps the days of different locations comparable and additive.)
- The lead cohort is the leads created (``Lead.created_at``) in the period: speed
  to lead, the funnel and leads per day are about them.
- Speed to lead: for each stage, the median and 95th percentile
  (``percentile_cont``) of the seconds between the two timestamps, over the
  cohort's leads that have both (NULLs are ignored).
- Messages: outbound messages created in the period, by their own location;
  sent = sent + recorded (accepted into the outbox), blocked, failed = failed +
  unknown. Messages still "sending" count in the total only.
- Opt-outs: OptOut rows created in the period. An opt-out has no location:
  brand-wide users (with no location chosen) see every one; otherwise an opt-out
  counts when its address is the phone (SMS) or email (email) of a lead of the
  chosen/visible locations.
- AI cost: the sum of ``ChatMessage.cost`` of assistant messages created in the
  period, scoped by the conversation's lead's location. Per booking: that sum
  divided by the appointments created in the period.
- Bookings: appointments created in the period (whatever their status since),
  by location.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from functools import cached_property
from typing import Any

from django.db.models import (
    Aggregate,
    Count,
    Exists,
    F,
    FloatField,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import TruncDate
from django.utils import timezone

from appointments.models import Appointment, AppointmentSource, AppointmentStatus
from chat.models import ChatMessage, MessageRole
from leads.models import Lead, LeadStatus
from locations.selectors import location_ids_visible_to
from messaging.models import (
    BlockReason,
    Channel,
    MessageStatus,
    OptOut,
    OutboundMessage,
)

SENT_STATUSES = (MessageStatus.SENT, MessageStatus.RECORDED)
FAILED_STATUSES = (MessageStatus.FAILED, MessageStatus.UNKNOWN)

#: (key, label, from field, to field) of each speed-to-lead stage.
SPEED_STAGES: tuple[tuple[str, str, str, str], ...] = (
    ("crm_to_ingested", "Created in CRM → ingested", "crm_created_at", "ingested_at"),
    ("ingested_to_touch", "Ingested → first touch", "ingested_at", "first_contacted_at"),
    ("touch_to_reply", "First touch → first reply", "first_contacted_at", "engaged_at"),
    ("reply_to_booked", "First reply → booked", "engaged_at", "booked_at"),
    ("crm_to_booked", "Created in CRM → booked (overall)", "crm_created_at", "booked_at"),
)  # fmt: skip

#: (field, label) of the stages a lead of the cohort reached, whatever its status now.
REACHED_STAGES: tuple[tuple[str, str], ...] = (
    ("first_contacted_at", "Contacted"),
    ("engaged_at", "Replied"),
    ("qualified_at", "Qualified"),
    ("booked_at", "Booked"),
    ("completed_at", "Completed"),
    ("lost_at", "Lost"),
)

MAX_PERIOD_DAYS = 366


# --- SQL building blocks ---------------------------------------------------------------


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``:
    the continuous (interpolated) percentile, ignoring NULLs."""

    function = "percentile_cont"
    name = "PercentileCont"
    output_field = FloatField()
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("A percentile is a fraction between 0 and 1.")
        super().__init__(expression, fraction=repr(fraction), **extra)


class EpochSeconds(Func):
    """The seconds of an interval (e.g. the difference of two timestamps), as a float."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)::double precision"
    output_field = FloatField()


# --- Period and scope ----------------------------------------------------------------------


def dashboard_zone() -> tzinfo:
    """The zone of the dashboard's days: Django's TIME_ZONE."""
    return timezone.get_default_timezone()


@dataclass(frozen=True)
class Period:
    date_from: date
    date_to: date
    zone: tzinfo

    def __post_init__(self) -> None:
        if self.date_from > self.date_to:
            raise ValueError("The period must start before it ends.")

    @property
    def start(self) -> datetime:
        return datetime.combine(self.date_from, time(0), tzinfo=self.zone)

    @property
    def end(self) -> datetime:
        """Exclusive: midnight after the last day."""
        return datetime.combine(
            self.date_to + timedelta(days=1), time(0), tzinfo=self.zone
        )

    @property
    def days(self) -> list[date]:
        count = (self.date_to - self.date_from).days + 1
        return [self.date_from + timedelta(days=n) for n in range(count)]


def default_period(*, today: date | None = None) -> tuple[date, date]:
    """The last 30 days, today included, in the dashboard's zone."""
    today = today or timezone.now().astimezone(dashboard_zone()).date()
    return today - timedelta(days=29), today


def scoped_location_ids(
    *, user: Any, location_ids: Iterable[int] | None = None
) -> frozenset[int] | None:
    """The locations the figures cover: None for every location of the brand.

    The locations asked for, limited to those the user may see; when none were
    asked for, every location the user may see.
    """
    visible = location_ids_visible_to(user=user)
    if location_ids is None:
        return visible
    requested = frozenset(int(pk) for pk in location_ids)
    return requested if visible is None else requested & visible


def _within(
    queryset: QuerySet[Any], path: str, ids: frozenset[int] | None
) -> QuerySet[Any]:
    if ids is None:
        return queryset
    if not ids:
        return queryset.none()
    return queryset.filter(**{f"{path}__in": ids})


def _in_period(
    queryset: QuerySet[Any], period: Period, field_name: str = "created_at"
) -> QuerySet[Any]:
    return queryset.filter(
        **{f"{field_name}__gte": period.start, f"{field_name}__lt": period.end}
    )


def _period(date_from: date, date_to: date) -> Period:
    return Period(date_from, date_to, dashboard_zone())


# --- Figures -------------------------------------------------------------------------------


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "\u2013"
    sign = "-" if seconds < 0 else ""
    value = abs(seconds)
    if value < 60:
        return f"{sign}{value:.0f} s"
    minutes = int(value // 60)
    if minutes < 60:
        rest = int(value - minutes * 60)
        return f"{sign}{minutes} min {rest} s" if rest else f"{sign}{minutes} min"
    hours = minutes // 60
    if hours < 24:
        rest = minutes - hours * 60
        return f"{sign}{hours} h {rest} min" if rest else f"{sign}{hours} h"
    days = hours // 24
    rest = hours - days * 24
    return f"{sign}{days} d {rest} h" if rest else f"{sign}{days} d"


@dataclass(frozen=True)
class StageSpeed:
    key: str
    label: str
    count: int
    median_seconds: float | None
    p95_seconds: float | None

    @property
    def median_display(self) -> str:
        return human_duration(self.median_seconds)

    @property
    def p95_display(self) -> str:
        return human_duration(self.p95_seconds)


@dataclass(frozen=True)
class Tally:
    key: str
    label: str
    count: int


@dataclass(frozen=True)
class LeadFigures:
    total: int
    speed: list[StageSpeed]
    by_status: list[Tally]
    reached: list[Tally]


def lead_figures(
    user: Any,
    date_from: date,
    date_to: date,
    location_ids: Iterable[int] | None = None,
) -> LeadFigures:
    """Speed to lead by stage and the funnel of the leads created in the period. One query."""
    period = _period(date_from, date_to)
    ids = scoped_location_ids(user=user, location_ids=location_ids)
    leads = _within(_in_period(Lead.objects.all(), period), "location_id", ids)
    aggregates: dict[str, Any] = {"total": Count("id")}
    for status in LeadStatus:
        aggregates[f"status_{status.value}"] = Count("id", filter=Q(status=status))
    for field_name, _label in REACHED_STAGES:
        aggregates[f"reached_{field_name}"] = Count(field_name)
    for key, _label, start, end in SPEED_STAGES:
        seconds = EpochSeconds(F(end) - F(start))
        aggregates[f"{key}_n"] = Count(
            "id", filter=Q(**{f"{start}__isnull": False, f"{end}__isnull": False})
        )
        aggregates[f"{key}_p50"] = PercentileCont(seconds, 0.5)
        aggregates[f"{key}_p95"] = PercentileCont(seconds, 0.95)
    row = leads.aggregate(**aggregates)
    return LeadFigures(
        total=row["total"] or 0,
        speed=[
            StageSpeed(
                key, label, row[f"{key}_n"] or 0, row[f"{key}_p50"], row[f"{key}_p95"]
            )
            for key, label, _start, _end in SPEED_STAGES
        ],
        by_status=[
            Tally(status.value, status.label, row[f"status_{status.value}"] or 0)
            for status in LeadStatus
        ],
        reached=[
            Tally(field_name, label, row[f"reached_{field_name}"] or 0)
            for field_name, label in REACHED_STAGES
        ],
    )


def leads_per_day(
    user: Any,
    date_from: date,
    date_to: date,
    location_ids: Iterable[int] | None = None,
) -> dict[date, int]:
    """Leads created per day of the period (every day present, zero when none). One query."""
    period = _period(date_from, date_to)
    ids = scoped_location_ids(user=user, location_ids=location_ids)
    leads = _within(_in_period(Lead.objects.all(), period), "location_id", ids)
    return _count_per_day(leads, period)


def _count_per_day(rows: QuerySet[Any], period: Period) -> dict[date, int]:
    """Rows per day of their ``created_at`` in the period (zero for empty days)."""
    per_day = (
        rows.annotate(day=TruncDate("created_at", tzinfo=period.zone))
        .values("day")
        .annotate(count=Count("id"))
        .order_by("day")
    )
    counts = dict.fromkeys(period.days, 0)
    counts.update({row["day"]: row["count"] for row in per_day})
    return counts


@dataclass
class MessageDay:
    day: date
    sent: int = 0
    blocked: int = 0
    failed: int = 0
    total: int = 0


@dataclass(frozen=True)
class MessageFigures:
    days: list[MessageDay]
    sent: int
    blocked: int
    failed: int
    total: int
    block_reasons: list[Tally]


def message_figures(
    user: Any,
    date_from: date,
    date_to: date,
    location_ids: Iterable[int] | None = None,
) -> MessageFigures:
    """Outbound messages per day by status group, and why they were blocked. Two queries."""
    period = _period(date_from, date_to)
    ids = scoped_location_ids(user=user, location_ids=location_ids)
    messages = _within(
        _in_period(OutboundMessage.objects.all(), period), "location_id", ids
    )
    rows = (
        messages.annotate(day=TruncDate("created_at", tzinfo=period.zone))
        .values("day")
        .annotate(
            sent=Count("id", filter=Q(status__in=SENT_STATUSES)),
            blocked=Count("id", filter=Q(status=MessageStatus.BLOCKED)),
            failed=Count("id", filter=Q(status__in=FAILED_STATUSES)),
            total=Count("id"),
        )
        .order_by("day")
    )
    days = {day: MessageDay(day) for day in period.days}
    for row in rows:
        days[row["day"]] = MessageDay(
            row["day"], row["sent"], row["blocked"], row["failed"], row["total"]
        )
    reasons = (
        messages.filter(status=MessageStatus.BLOCKED)
        .values("block_reason")
        .annotate(count=Count("id"))
        .order_by("-count", "block_reason")
    )
    labels = dict(BlockReason.choices)
    block_reasons = [
        Tally(
            row["block_reason"],
            labels.get(row["block_reason"], row["block_reason"]),
            row["count"],
        )
        for row in reasons
    ]
    series = list(days.values())
    return MessageFigures(
        days=series,
        sent=sum(d.sent for d in series),
        blocked=sum(d.blocked for d in series),
        failed=sum(d.failed for d in series),
        total=sum(d.total for d in series),
        block_reasons=block_reasons,
    )


def opt_outs_per_day(
    user: Any,
    date_from: date,
    date_to: date,
    location_ids: Iterable[int] | None = None,
) -> dict[date, int]:
    """Opt-outs recorded per day of the period. One query.

    An opt-out has no location: with a scope (a location-limited user, or a
    location chosen) it counts when its address belongs to a lead of the scope.
    """
    period = _period(date_from, date_to)
    ids = scoped_location_ids(user=user, location_ids=location_ids)
    opt_outs = _in_period(OptOut.objects.all(), period)
    if ids is not None:
        if not ids:
            opt_outs = opt_outs.none()
        else:
            leads = Lead.objects.filter(location_id__in=ids)
            opt_outs = opt_outs.filter(
                Q(Exists(leads.filter(phone=OuterRef("address"))), channel=Channel.SMS)
                | Q(
                    Exists(leads.filter(email=OuterRef("address"))),
                    channel=Channel.EMAIL,
                )
            )
    return _count_per_day(opt_outs, period)


@dataclass
class CostDay:
    day: date
    cost: Decimal = Decimal(0)
    replies: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


def ai_cost_per_day(
    user: Any,
    date_from: date,
    date_to: date,
    location_ids: Iterable[int] | None = None,
) -> list[CostDay]:
    """The assistant's cost (USD), replies and tokens per day of the period. One query."""
    period = _period(date_from, date_to)
    ids = scoped_location_ids(user=user, location_ids=location_ids)
    replies = _within(
        _in_period(ChatMessage.objects.filter(role=MessageRole.ASSISTANT), period),
        "session__lead__location_id",
        ids,
    )
    rows = (
        replies.annotate(day=TruncDate("created_at", tzinfo=period.zone))
        .values("day")
        .annotate(
            cost=Sum("cost"),
            replies=Count("id"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
        )
        .order_by("day")
    )
    days = {day: CostDay(day) for day in period.days}
    for row in rows:
        days[row["day"]] = CostDay(
            row["day"],
            row["cost"] or Decimal(0),
            row["replies"],
            row["input_tokens"] or 0,
            row["output_tokens"] or 0,
        )
    return list(days.values())


@dataclass(frozen=True)
class LocationBookings:
    location_id: int
    name: str
    total: int
    booked: int
    completed: int
    cancelled: int
    no_show: int
    by_assistant: int


def bookings_per_location(
    user: Any,
    date_from: date,
    date_to: date,
    location_ids: Iterable[int] | None = None,
) -> list[LocationBookings]:
    """Appointments created in the period, per location (most first). One query."""
    period = _period(date_from, date_to)
    ids = scoped_location_ids(user=user, location_ids=location_ids)
    rows = (
        _within(_in_period(Appointment.objects.all(), period), "location_id", ids)
        .values("location_id", "location__name")
        .annotate(
            total=Count("id"),
            booked=Count("id", filter=Q(status=AppointmentStatus.BOOKED)),
            completed=Count("id", filter=Q(status=AppointmentStatus.COMPLETED)),
            cancelled=Count("id", filter=Q(status=AppointmentStatus.CANCELLED)),
            no_show=Count("id", filter=Q(status=AppointmentStatus.NO_SHOW)),
            by_assistant=Count(
                "id",
                filter=Q(source__in=[AppointmentSource.CHAT, AppointmentSource.SMS]),
            ),
        )
        .order_by("-total", "location__name", "location_id")
    )
    return [
        LocationBookings(
            row["location_id"],
            row["location__name"],
            row["total"],
            row["booked"],
            row["completed"],
            row["cancelled"],
            row["no_show"],
            row["by_assistant"],
        )
        for row in rows
    ]


# --- The whole dashboard ---------------------------------------------------------------------


@dataclass
class DailyRow:
    day: date
    leads: int
    sent: int
    blocked: int
    failed: int
    opt_outs: int
    ai_cost: Decimal


@dataclass
class Dashboard:
    period: Period
    location_ids: frozenset[int] | None
    leads: LeadFigures
    leads_per_day: dict[date, int]
    messages: MessageFigures
    opt_outs_per_day: dict[date, int]
    ai_cost_per_day: list[CostDay]
    bookings: list[LocationBookings]
    opt_outs_note: str = ""
    chart_locations: int = 20

    @property
    def opt_outs(self) -> int:
        return sum(self.opt_outs_per_day.values())

    @property
    def ai_cost(self) -> Decimal:
        return sum((day.cost for day in self.ai_cost_per_day), Decimal(0))

    @property
    def ai_replies(self) -> int:
        return sum(day.replies for day in self.ai_cost_per_day)

    @property
    def bookings_total(self) -> int:
        return sum(row.total for row in self.bookings)

    @property
    def ai_cost_per_booking(self) -> Decimal | None:
        if not self.bookings_total:
            return None
        return (self.ai_cost / self.bookings_total).quantize(Decimal("0.0001"))

    @property
    def first_touch(self) -> StageSpeed:
        return next(s for s in self.leads.speed if s.key == "ingested_to_touch")

    @cached_property
    def daily(self) -> list[DailyRow]:
        """One row per day of the period, every figure side by side."""
        messages = {d.day: d for d in self.messages.days}
        cost = {d.day: d.cost for d in self.ai_cost_per_day}
        return [
            DailyRow(
                day,
                self.leads_per_day.get(day, 0),
                messages[day].sent,
                messages[day].blocked,
                messages[day].failed,
                self.opt_outs_per_day.get(day, 0),
                cost.get(day, Decimal(0)),
            )
            for day in self.period.days
        ]

    def chart_data(self) -> dict[str, Any]:
        """Plain JSON for the charts (numbers as floats, days as ISO dates)."""

        def minutes(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds / 60, 2)

        top = self.bookings[: self.chart_locations]
        return {
            "days": [day.isoformat() for day in self.period.days],
            "leads": [row.leads for row in self.daily],
            "messages": {
                "sent": [row.sent for row in self.daily],
                "blocked": [row.blocked for row in self.daily],
                "failed": [row.failed for row in self.daily],
            },
            "optOuts": [row.opt_outs for row in self.daily],
            "aiCost": [float(row.ai_cost) for row in self.daily],
            "funnel": {
                "labels": [t.label for t in self.leads.by_status],
                "values": [t.count for t in self.leads.by_status],
            },
            "reached": {
                "labels": ["Created", *[t.label for t in self.leads.reached]],
                "values": [self.leads.total, *[t.count for t in self.leads.reached]],
            },
            "speed": {
                "labels": [s.label for s in self.leads.speed],
                "medianMinutes": [minutes(s.median_seconds) for s in self.leads.speed],
                "p95Minutes": [minutes(s.p95_seconds) for s in self.leads.speed],
            },
            "bookings": {
                "labels": [row.name for row in top],
                "values": [row.total for row in top],
            },
        }


def dashboard(
    user: Any,
    date_from: date,
    date_to: date,
    location_ids: Iterable[int] | None = None,
) -> Dashboard:
    """Every figure of the dashboard: seven queries whatever the number of rows
    (plus the user's locations, once per request)."""
    if location_ids is not None:
        location_ids = frozenset(location_ids)
    args = (user, date_from, date_to, location_ids)
    ids = scoped_location_ids(user=user, location_ids=location_ids)
    note = (
        ""
        if ids is None
        else "Opt-outs have no location: those counted here are of addresses of "
        "these locations' leads."
    )
    return Dashboard(
        period=_period(date_from, date_to),
        location_ids=ids,
        leads=lead_figures(*args),
        leads_per_day=leads_per_day(*args),
        messages=message_figures(*args),
        opt_outs_per_day=opt_outs_per_day(*args),
        ai_cost_per_day=ai_cost_per_day(*args),
        bookings=bookings_per_location(*args),
        opt_outs_note=note,
    )
