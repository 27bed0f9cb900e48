"""Property tests of the availability engine: nothing outside hours, closures, notice or capacity; DST-safe."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from appointments.availability import Busy, slots_compute
from locations.time_zones import US_ZONES

ZONES = list(US_ZONES)

# Spring-forward and fall-back Sundays (US rules) for 2025-2030.
DST_DAYS = [
    date(2025, 3, 9), date(2025, 11, 2), date(2026, 3, 8), date(2026, 11, 1), date(2027, 3, 14), date(2027, 11, 7),
    date(2028, 3, 12), date(2028, 11, 5), date(2029, 3, 11), date(2029, 11, 4), date(2030, 3, 10), date(2030, 11, 3),
]  # fmt: skip


@st.composite
def scenarios(draw):
    zone = draw(st.sampled_from(ZONES))
    start_day = draw(
        st.one_of(
            st.sampled_from(DST_DAYS), st.dates(date(2025, 1, 1), date(2030, 12, 1))
        )
    )
    days = draw(st.integers(0, 6))
    hours = {}
    for weekday in range(7):
        if draw(st.booleans()) or weekday == start_day.weekday():
            # Sunday opening hours that include the DST switch at 02:00 on a few draws
            opens = draw(st.integers(0, 12))
            closes = draw(st.integers(opens + 1, 23))
            hours[weekday] = (
                time(opens, draw(st.sampled_from([0, 30]))),
                time(closes, 0),
            )
        else:
            hours[weekday] = None
    hours = {k: v for k, v in hours.items() if v is None or v[0] < v[1]}
    closures = []
    if draw(st.booleans()):
        first = start_day + timedelta(days=draw(st.integers(0, days)))
        closures.append((first, first + timedelta(days=draw(st.integers(0, 2)))))
    bays = draw(st.integers(1, 4))
    tz = ZoneInfo(zone)
    busy = []
    for _ in range(draw(st.integers(0, 12))):
        day = start_day + timedelta(days=draw(st.integers(0, days)))
        start = datetime.combine(
            day,
            time(draw(st.integers(0, 22)), draw(st.sampled_from([0, 15, 30, 45]))),
            tzinfo=tz,
        ).astimezone(UTC)
        busy.append(
            Busy(
                start,
                start + timedelta(minutes=draw(st.sampled_from([30, 60, 90, 180]))),
                draw(st.integers(1, bays)),
            )
        )
    now = datetime.combine(
        start_day, time(draw(st.integers(0, 23))), tzinfo=tz
    ).astimezone(UTC) - timedelta(days=draw(st.integers(0, 1)))
    return {
        "zone": zone,
        "hours": hours,
        "closures": closures,
        "bays": bays,
        "duration": timedelta(minutes=draw(st.sampled_from([30, 45, 60, 120, 240]))),
        "busy": busy,
        "now": now,
        "date_from": start_day,
        "date_to": start_day + timedelta(days=days),
        "min_notice": timedelta(minutes=draw(st.sampled_from([0, 60, 120]))),
        "step": timedelta(minutes=draw(st.sampled_from([15, 30, 60]))),
        "buffer": timedelta(minutes=draw(st.sampled_from([0, 15]))),
    }


@given(scenario=scenarios())
@settings(max_examples=400, deadline=None)
def test_no_slot_breaks_a_rule(scenario):
    slots = slots_compute(**scenario)
    tz = ZoneInfo(scenario["zone"])

    starts = [slot.start for slot in slots]
    assert starts == sorted(starts)
    assert not [t for t, n in Counter(starts).items() if n > 1], (
        "a repeated wall time gave two slots"
    )
    for slot in slots:
        local_start = slot.start.astimezone(tz)
        local_end = slot.end.astimezone(tz)
        day = local_start.date()
        assert scenario["date_from"] <= day <= scenario["date_to"]
        # inside the day's hours
        window = scenario["hours"].get(day.weekday())
        assert window is not None
        opens, closes = window
        assert local_start.time() >= opens
        closing = datetime.combine(day, closes, tzinfo=tz)
        assert slot.end + scenario["buffer"] <= closing.astimezone(
            UTC
        ) or local_end.replace(tzinfo=None) <= datetime.combine(day, closes)
        # not in a closure, not before the notice
        assert not any(first <= day <= last for first, last in scenario["closures"])
        assert slot.start >= scenario["now"] + scenario["min_notice"]
        # the wall time exists (no slot in a skipped hour)
        naive = local_start.replace(tzinfo=None)
        assert naive.replace(tzinfo=tz).astimezone(UTC) == slot.start
        # capacity: each free bay is free for the whole slot plus the buffer, and no more bays than exist
        assert 1 <= len(slot.free_bays) <= scenario["bays"]
        for bay in slot.free_bays:
            for booking in scenario["busy"]:
                if booking.bay == bay:
                    overlaps = (
                        booking.start < slot.end + scenario["buffer"]
                        and slot.start < booking.end + scenario["buffer"]
                    )
                    assert not overlaps
        busy_bays = {
            b.bay for b in scenario["busy"]
            if b.start < slot.end + scenario["buffer"] and slot.start < b.end + scenario["buffer"]
        }  # fmt: skip
        assert set(slot.free_bays) == set(range(1, scenario["bays"] + 1)) - busy_bays


def _day(zone: str, day: date, duration_minutes: int = 60) -> list:
    return slots_compute(
        zone=zone,
        hours={day.weekday(): (time(0, 0), time(23, 30))},
        closures=[],
        bays=1,
        duration=timedelta(minutes=duration_minutes),
        busy=[],
        now=datetime(2000, 1, 1, tzinfo=UTC),
        date_from=day,
        date_to=day,
        min_notice=timedelta(0),
        step=timedelta(minutes=30),
    )


def test_spring_forward_skips_the_missing_hour_in_three_zones():
    for zone in ("America/New_York", "America/Chicago", "America/Los_Angeles"):
        slots = _day(zone, date(2026, 3, 8), duration_minutes=30)
        local = [
            slot.start.astimezone(ZoneInfo(zone)).strftime("%H:%M") for slot in slots
        ]
        assert "02:00" not in local
        assert "02:30" not in local
        assert local[:6] == ["00:00", "00:30", "01:00", "01:30", "03:00", "03:30"]
        assert (
            len(slots) == 45
        )  # 47 half hours from 00:00 to 23:00 less the two that do not exist


def test_fall_back_offers_the_repeated_hour_once_in_three_zones():
    for zone in ("America/New_York", "America/Denver", "America/Los_Angeles"):
        slots = _day(zone, date(2026, 11, 1), duration_minutes=30)
        local = [
            slot.start.astimezone(ZoneInfo(zone)).strftime("%H:%M") for slot in slots
        ]
        assert local.count("01:00") == 1
        assert local.count("01:30") == 1
        assert len(slots) == 47
        # and a two-hour job starting at 00:30 really lasts two hours (three on the clock)
        long = _day(zone, date(2026, 11, 1), duration_minutes=120)
        first = long[1]
        assert first.end - first.start == timedelta(hours=2)


def test_phoenix_has_no_dst():
    slots = _day("America/Phoenix", date(2026, 3, 8), duration_minutes=30)
    assert len(slots) == 47


def test_full_bays_close_the_slot_and_partial_ones_do_not():
    start = datetime(2026, 11, 18, 17, 0, tzinfo=UTC)  # 09:00 in Los Angeles
    common = {
        "zone": "America/Los_Angeles",
        "hours": {2: (time(9), time(18))},
        "closures": [],
        "duration": timedelta(hours=1),
        "now": start - timedelta(days=1),
        "date_from": start.date(),
        "date_to": start.date(),
    }
    two_busy = [
        Busy(start, start + timedelta(hours=1), 1),
        Busy(start, start + timedelta(hours=1), 2),
    ]

    with_three = slots_compute(bays=3, busy=two_busy, **common)
    with_two = slots_compute(bays=2, busy=two_busy, **common)

    assert with_three[0].start == start
    assert with_three[0].free_bays == (3,)
    assert with_two[0].start == start + timedelta(
        hours=1
    )  # 09:00 and 09:30 overlap the two busy bays
    assert with_two[0].free_bays == (1, 2)
