"""Time zone choices for forms: the US zones first, then every IANA zone."""

import zoneinfo

US_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
)

TIME_ZONE_CHOICES = [
    ("United States", [(zone, zone) for zone in US_ZONES]),
    (
        "All zones",
        [
            (zone, zone)
            for zone in sorted(zoneinfo.available_timezones())
            if zone not in US_ZONES
        ],
    ),
]
