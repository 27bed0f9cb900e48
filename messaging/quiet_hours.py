"""When a customer may be messaged: 08:00-21:00 where they are, stricter where the law says so.

The window is evaluated in every zone the recipient may be in: the location's
zone, and the zone(s) of the phone's area code when the number belongs to
another state. A moment is allowed only if it is inside the window in all of
them. Florida and Oklahoma (by the location's state or the phone's area code)
end at 20:00. A brand may narrow the window, never widen it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import geocoder
from phonenumbers import timezone as phone_timezones

LEGAL_START = time(8, 0)
LEGAL_END = time(21, 0)
# States whose telemarketing laws end the day at 20:00 (FTSA, OTSA).
STRICT_STATES = {"FL": time(20, 0), "OK": time(20, 0)}

US_STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA", "Colorado": "CO",
    "Connecticut": "CT", "Delaware": "DE", "District of Columbia": "DC", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS",
    "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA",
    "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO", "Montana": "MT",
    "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM",
    "New York": "NY", "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD",
    "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington": "WA",
    "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY", "Puerto Rico": "PR",
}  # fmt: skip
STATE_CODES = set(US_STATES.values())


@lru_cache(maxsize=65536)
def state_of_phone(phone: str) -> str:
    """The US state a number's area code belongs to ("" when unknown or not US)."""
    if not phone:
        return ""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ""
    if number.country_code != 1:
        return ""
    description = geocoder.description_for_number(number, "en")
    if description in US_STATES:
        return US_STATES[description]
    suffix = description.rsplit(", ", 1)[-1] if ", " in description else ""
    return suffix if suffix in STATE_CODES else ""


@lru_cache(maxsize=65536)
def zones_of_phone(phone: str) -> tuple[str, ...]:
    if not phone:
        return ()
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ()
    return [
        zone
        for zone in phone_timezones.time_zones_for_number(number)
        if zone != "Etc/Unknown"
    ]


def normalise_state(value: str) -> str:
    value = (value or "").strip()
    if value.upper() in STATE_CODES:
        return value.upper()
    return US_STATES.get(value.title(), "")


@dataclass(frozen=True)
class Window:
    """The daily window [start, end) that must hold in every one of ``zones``."""

    zones: tuple[str, ...]
    start: time
    end: time

    def allows(self, instant: datetime) -> bool:
        return all(
            self.start
            <= instant.astimezone(ZoneInfo(z)).time().replace(tzinfo=None)
            < self.end
            for z in self.zones
        )

    def next_allowed(self, instant: datetime) -> datetime:
        """The first whole minute at or after ``instant`` that the window allows."""
        rounded = _ceil_minute(instant)
        if self.allows(rounded):
            return rounded
        # The allowed set is an intersection of daily intervals: it opens at one of the zones' starts.
        candidates = []
        for zone_name in self.zones:
            zone = ZoneInfo(zone_name)
            local_day = rounded.astimezone(zone).date()
            for offset in range(4):
                candidate = _local(zone, local_day + timedelta(days=offset), self.start)
                if candidate >= rounded and self.allows(candidate):
                    candidates.append(candidate)
                    break
        if (
            not candidates
        ):  # pragma: no cover - zones more than a window apart cannot overlap
            raise ValueError(
                f"No moment is inside {self.start}-{self.end} in all of {self.zones}."
            )
        return min(candidates).astimezone(UTC)

    def seconds_left(self, instant: datetime) -> int:
        """Seconds until the window closes (0 when outside it)."""
        if not self.allows(instant):
            return 0
        left = []
        for zone_name in self.zones:
            zone = ZoneInfo(zone_name)
            local = instant.astimezone(zone)
            closing = _local(zone, local.date(), self.end)
            left.append((closing - instant).total_seconds())
        return max(0, math.floor(min(left)))


def _local(zone: ZoneInfo, day: date, at: time) -> datetime:
    """``at`` on ``day`` in ``zone``; a wall time that does not exist (DST gap) moves forward."""
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=zone)
    round_trip = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if round_trip != naive:  # in the gap: the instant after it
        aware = naive.replace(tzinfo=zone, fold=1)
    return aware


def _ceil_minute(instant: datetime) -> datetime:
    if instant.second == 0 and instant.microsecond == 0:
        return instant
    return instant.replace(second=0, microsecond=0) + timedelta(minutes=1)


@lru_cache(maxsize=65536)
def recipient_window(
    *,
    location_zone: str,
    location_state: str = "",
    phone: str = "",
    start: time = LEGAL_START,
    end: time = LEGAL_END,
) -> Window:
    """The window for a recipient of a location, narrowed by the brand's ``start``/``end``."""
    start = max(start, LEGAL_START)
    end = min(end, LEGAL_END)
    zones = [location_zone]
    states = {normalise_state(location_state)}
    phone_state = state_of_phone(phone)
    if phone_state:
        states.add(phone_state)
        if phone_state != normalise_state(location_state):
            zones += [zone for zone in zones_of_phone(phone) if zone not in zones]
    for state in states:
        if state in STRICT_STATES:
            end = min(end, STRICT_STATES[state])
    return Window(zones=tuple(zones), start=start, end=end)


def daily_cap_for(*, location_state: str, phone: str, cap: int) -> int:
    """Automated messages allowed per recipient per 24 hours: the brand's cap, 3 in FL and OK."""
    states = {normalise_state(location_state), state_of_phone(phone)}
    return min(cap, 3) if states & set(STRICT_STATES) else cap
