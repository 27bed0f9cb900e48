"""Free slots: a pure function of a location's hours, closures, bays and bookings.

Slots start every ``step`` of *wall-clock* time from opening, in the location's
time zone, and must end (plus the buffer) by closing. On a spring-forward day a
wall time that does not exist yields no slot; on a fall-back day a repeated wall
time yields one slot (its first occurrence). A slot is offered when at least one
bay is free for its whole length plus the buffer, and when it starts at least
``min_notice`` from now. Everything returned is in UTC.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    free_bays: tuple[int, ...]


@dataclass(frozen=True)
class Busy:
    start: datetime
    end: datetime
    bay: int


def _exists(naive: datetime, zone: ZoneInfo) -> bool:
    aware = naive.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive


def _closing(naive: datetime, zone: ZoneInfo) -> datetime:
    """Closing time as an instant; a closing wall time inside a DST gap means the end of the gap."""
    if _exists(naive, zone):
        return naive.replace(tzinfo=zone).astimezone(UTC)
    return naive.replace(tzinfo=zone, fold=1).astimezone(UTC)


class _BayCalendar:
    """Booked intervals per bay, sorted, for overlap checks by bisection."""

    def __init__(self, bays: int, busy: Sequence[Busy], buffer: timedelta) -> None:
        self.bays = range(1, bays + 1)
        intervals: dict[int, list[tuple[datetime, datetime]]] = {
            bay: [] for bay in self.bays
        }
        for booking in busy:
            if booking.bay in intervals:
                # The buffer follows each booking: the bay needs cleaning before the next car.
                intervals[booking.bay].append((booking.start, booking.end + buffer))
        self.starts: dict[int, list[datetime]] = {}
        self.ends: dict[int, list[datetime]] = {}
        for bay, spans in intervals.items():
            spans.sort()
            merged: list[tuple[datetime, datetime]] = []
            for start, end in spans:
                if merged and start <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], end))
                else:
                    merged.append((start, end))
            self.starts[bay] = [s for s, _ in merged]
            self.ends[bay] = [e for _, e in merged]

    def free(self, start: datetime, end: datetime) -> tuple[int, ...]:
        free = []
        for bay in self.bays:
            starts, ends = self.starts[bay], self.ends[bay]
            # The last busy interval starting before ``end`` is the only one that can overlap.
            index = bisect.bisect_left(starts, end) - 1
            if index < 0 or ends[index] <= start:
                free.append(bay)
        return tuple(free)


def slots_compute(
    *,
    zone: str,
    hours: Mapping[int, tuple[time, time] | None],
    closures: Sequence[tuple[date, date]],
    bays: int,
    duration: timedelta,
    busy: Sequence[Busy],
    now: datetime,
    date_from: date,
    date_to: date,
    min_notice: timedelta = timedelta(hours=2),
    step: timedelta = timedelta(minutes=30),
    buffer: timedelta = timedelta(0),
) -> list[Slot]:
    """Every free slot from ``date_from`` to ``date_to`` (local dates, inclusive), in start order.

    ``hours`` maps weekday (Monday 0) to (opens, closes) or None for closed; a
    missing weekday is closed. ``closures`` are inclusive local date ranges.
    """
    if bays < 1 or duration <= timedelta(0) or step <= timedelta(0):
        return []
    tz = ZoneInfo(zone)
    calendar = _BayCalendar(bays, busy, buffer)
    earliest = now + min_notice
    closed_days = sorted(closures)
    slots: list[Slot] = []
    day = date_from
    while day <= date_to:
        window = hours.get(day.weekday())
        if window is not None and not any(
            first <= day <= last for first, last in closed_days
        ):
            opens, closes = window
            closing = _closing(datetime.combine(day, closes), tz)
            wall = datetime.combine(day, opens)
            end_of_day = datetime.combine(day, closes)
            # Most days keep one UTC offset throughout: plain arithmetic then.
            # A DST day goes wall time by wall time.
            offset = datetime.combine(day, time.min, tzinfo=tz).utcoffset()
            steady = (
                offset == datetime.combine(day, time(23, 59), tzinfo=tz).utcoffset()
            )
            while wall < end_of_day:
                if steady:
                    start = (wall - offset).replace(tzinfo=UTC)
                elif _exists(wall, tz):
                    # fold=0: the first of a repeated wall time
                    start = wall.replace(tzinfo=tz).astimezone(UTC)
                else:
                    start = None
                if start is not None:
                    end = start + duration
                    if end + buffer <= closing and start >= earliest:
                        free = calendar.free(start, end + buffer)
                        if free:
                            slots.append(Slot(start=start, end=end, free_bays=free))
                wall += step
        day += timedelta(days=1)
    return slots
