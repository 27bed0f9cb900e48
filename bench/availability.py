"""Availability: 60 days of slots at a 6-bay location with 2,000 bookings, for each of 40 services.

Times ``appointments.services.availability_for`` (the one service behind the
chat tools, the API and the admin): its queries (hours, closures, bookings in
the window, the location's price and duration) and the slot computation. Each
of the 40 services is asked five times. Target: <= 20 ms per call.

    .venv/bin/python bench/availability.py [--bookings 2000] [--services 40] [--days 60]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as bench

SLUG = "benchavail"
BOOKINGS, SERVICES, DAYS, BAYS, ROUNDS = 2000, 40, 60, 6, 5


def setup(
    bookings: int, services: int, days: int
) -> tuple[object, object, list[object], date]:
    from django_tenants.utils import tenant_context

    from appointments.models import Appointment, ScheduledMessage
    from leads.models import Lead, LeadSource
    from locations.models import Closure, Location, LocationHours, ServiceCatalogItem

    rng = random.Random(20261122)
    tenant = bench.ensure_tenant(slug=SLUG, name="Bench Availability")
    with tenant_context(tenant):
        bench.truncate_tenant_tables(
            tenant,
            [
                ScheduledMessage,
                Appointment,
                Lead,
                ServiceCatalogItem,
                Closure,
                LocationHours,
                Location,
            ],
        )
        location = Location.objects.create(
            name="Bench store", time_zone="America/Los_Angeles", region="CA", bays=BAYS
        )
        LocationHours.objects.bulk_create(
            [
                LocationHours(
                    location=location, weekday=d, opens_at=clock(8), closes_at=clock(18)
                )
                for d in range(6)
            ]
            + [LocationHours(location=location, weekday=6, is_closed=True)]
        )
        today = datetime.now(location.zone).date() + timedelta(days=1)
        Closure.objects.create(
            location=location,
            starts_on=today + timedelta(days=20),
            ends_on=today + timedelta(days=21),
            reason="Training",
        )
        items = ServiceCatalogItem.objects.bulk_create(
            ServiceCatalogItem(
                code=f"bench-{i}", category="Bench", name=f"Service {i}", price_cents=10000 + i * 100,
                duration_minutes=rng.choice([30, 45, 60, 90, 120, 180, 240, 300, 480]),
            )
            for i in range(services)
        )  # fmt: skip
        leads = Lead.objects.bulk_create(
            Lead(
                location=location,
                first_name=f"C{i}",
                email=f"c{i}@example.com",
                source=LeadSource.STAFF,
            )
            for i in range(bookings)
        )
        # Spread the bookings evenly: each open day gets its share, placed bay by bay with gaps.
        open_days = [
            today + timedelta(days=n)
            for n in range(days)
            if (today + timedelta(days=n)).weekday() != 6
        ]
        per_day = -(-bookings // len(open_days))
        rows = []
        for day in open_days:
            placed, bay = 0, 1
            cursor = datetime.combine(day, clock(8), tzinfo=location.zone)
            closing = datetime.combine(day, clock(18), tzinfo=location.zone)
            while placed < per_day and len(rows) < bookings and bay <= BAYS:
                cursor += timedelta(minutes=rng.choice([0, 0, 30]))
                end = cursor + timedelta(minutes=rng.choice([30, 60, 90]))
                if end > closing:
                    bay, cursor = (
                        bay + 1,
                        datetime.combine(day, clock(8), tzinfo=location.zone),
                    )
                    continue
                rows.append((bay, cursor, end, rng.choice(items)))
                placed, cursor = placed + 1, end
        Appointment.objects.bulk_create(
            (
                Appointment(
                    lead=leads[i], location=location, service=item, bay=bay, starts_at=start.astimezone(UTC),
                    ends_at=end.astimezone(UTC), source="staff", price_cents=item.price_cents,
                )
                for i, (bay, start, end, item) in enumerate(rows)
            ),
            batch_size=1000,
        )  # fmt: skip
        return tenant, location, items, today


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookings", type=int, default=BOOKINGS)
    parser.add_argument("--services", type=int, default=SERVICES)
    parser.add_argument("--days", type=int, default=DAYS)
    args = parser.parse_args()

    bench.django_setup()
    bench.migrate()
    from django_tenants.utils import tenant_context

    from appointments.models import Appointment
    from appointments.services import availability_for

    tenant, location, items, first_day = setup(args.bookings, args.services, args.days)
    with tenant_context(tenant):
        booked = Appointment.objects.filter(location=location).count()
        last_day = first_day + timedelta(days=args.days - 1)
        availability_for(
            location=location, service=items[0], date_from=first_day, date_to=last_day
        )  # warm-up
        timings, slot_counts = [], []
        for _ in range(ROUNDS):
            for item in items:
                started = time.perf_counter()
                slots = availability_for(
                    location=location,
                    service=item,
                    date_from=first_day,
                    date_to=last_day,
                )
                timings.append((time.perf_counter() - started) * 1000)
                slot_counts.append(len(slots))

    rows = [
        bench.row_at_most("time per call p50", bench.percentile(timings, 50), "ms", 20),
        bench.row_at_most("time per call p95", bench.percentile(timings, 95), "ms", 20),
        bench.Row("time per call max", max(timings), "ms"),
        bench.Row("calls", len(timings), "calls"),
        bench.Row("existing bookings", booked, "bookings"),
        bench.Row("bays", BAYS, "bays"),
        bench.Row("services", len(items), "services"),
        bench.Row("days per call", args.days, "days"),
        bench.Row(
            "free slots per call (median)", bench.percentile(slot_counts, 50), "slots"
        ),
    ]
    bench.write_results("availability", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
