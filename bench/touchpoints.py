"""How fast one worker sends due touch points, against the database's own limit.

50,000 due touch points (50,000 leads, one step each), the outbox backend, the
brand live. Two phases over the same rows, in the same run:

1. *ours*: ``touchpoints_process_due`` in this process (one worker): claim with
   SKIP LOCKED, check, render, gate, record, mark.
2. *limit*: a raw-SQL claim-and-mark loop over the same rows (claim a batch
   with FOR UPDATE SKIP LOCKED, mark it done), nothing else.

Reports touch points per second for both and their ratio. Target: ours >= 1,000/s.

    .venv/bin/python bench/touchpoints.py [--rows 50000] [--batch 500]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as bench

ROWS = 50_000
BATCH = 500
SLUG = "benchcadence"


def setup(rows: int) -> tuple[object, list[int]]:
    from django.db import connection
    from django_tenants.utils import (
        get_public_schema_name,
        schema_context,
        tenant_context,
    )

    from leads.models import Lead, LeadSource
    from locations.models import Location
    from messaging.models import MessagingPolicy, OutboundMessage
    from tenants.models import Tenant
    from touchpoints.models import Cadence, CadenceEnrollment, CadenceStep, TouchPoint

    tenant = bench.ensure_tenant(slug=SLUG, name="Bench Cadence")
    with schema_context(get_public_schema_name()):
        Tenant.objects.filter(pk=tenant.pk).update(outbound_mode="live")
    tenant.outbound_mode = "live"
    now = datetime.now(UTC)
    with tenant_context(tenant):
        bench.truncate_tenant_tables(
            tenant,
            [
                OutboundMessage,
                TouchPoint,
                CadenceEnrollment,
                Lead,
                CadenceStep,
                Cadence,
                Location,
            ],
        )
        MessagingPolicy.objects.get_or_create(
            singleton=True, defaults={"daily_cap": 10}
        )
        location = Location.objects.create(
            name="Bench store", time_zone=bench.daytime_zone(now), bays=3
        )
        cadence = Cadence.objects.create(name="Bench", is_default=True)
        step = CadenceStep.objects.create(
            cadence=cadence,
            position=1,
            channel="sms",
            delay_minutes=0,
            template="Hi {{ first_name }}, thanks for asking {{ location }} for a quote. {{ chat_link }} {{ opt_out }}",
        )
        leads = Lead.objects.bulk_create(
            (
                Lead(
                    location=location,
                    first_name=f"Customer{i}",
                    phone=f"+1555{i:07d}",
                    email=f"customer{i}@example.com",
                    source=LeadSource.STAFF,
                    ingested_at=now,
                )
                for i in range(rows)
            ),
            batch_size=5000,
        )
        CadenceEnrollment.objects.bulk_create(
            (
                CadenceEnrollment(lead=lead, cadence=cadence, started_at=now)
                for lead in leads
            ),
            batch_size=5000,
        )
        TouchPoint.objects.bulk_create(
            (
                TouchPoint(
                    lead=lead,
                    step=step,
                    channel="sms",
                    due_at=now - timedelta(minutes=1),
                )
                for lead in leads
            ),
            batch_size=5000,
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return tenant, [lead.pk for lead in leads]


def run_ours(tenant: object, batch: int) -> tuple[float, int, dict[str, int]]:
    from django_tenants.utils import tenant_context

    from messaging.models import OutboundMessage
    from touchpoints import processor
    from touchpoints.models import TouchPoint

    with tenant_context(tenant):
        started = time.perf_counter()
        stats = processor.touchpoints_process_due(batch_size=batch, max_seconds=3600)
        elapsed = time.perf_counter() - started
        statuses = dict(
            TouchPoint.objects.values_list("status").annotate(
                n=__import__("django").db.models.Count("pk")
            )
        )
        messages = OutboundMessage.objects.count()
    return elapsed, stats.claimed, {**statuses, "outbound messages": messages}


def reset(tenant: object) -> None:
    from django.db import connection
    from django_tenants.utils import tenant_context

    with tenant_context(tenant), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE touchpoints_touchpoint SET status = 'scheduled', claimed_until = NULL, sending_at = NULL, outbound_message_id = NULL"
        )


def run_raw(tenant: object, batch: int) -> tuple[float, int]:
    """Claim with SKIP LOCKED and mark done, in raw SQL: the database's own ceiling for this loop."""
    from django.db import connection, transaction
    from django_tenants.utils import tenant_context

    done = 0
    with tenant_context(tenant):
        started = time.perf_counter()
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    """
                    UPDATE touchpoints_touchpoint SET status = 'claimed', claimed_until = now() + interval '5 minutes'
                    WHERE id IN (
                        SELECT id FROM touchpoints_touchpoint
                        WHERE status = 'scheduled' AND due_at <= now()
                        ORDER BY due_at, id LIMIT %s FOR UPDATE SKIP LOCKED
                    ) RETURNING id
                    """,
                    [batch],
                )
                ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                break
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE touchpoints_touchpoint SET status = 'recorded', finished_at = now(), claimed_until = NULL WHERE id = ANY(%s)",
                    [ids],
                )
            done += len(ids)
        elapsed = time.perf_counter() - started
    return elapsed, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args()

    bench.django_setup()
    from django.conf import settings

    settings.MESSAGING_BACKEND = "outbox"
    bench.migrate()
    print(f"Setting up {args.rows:,} due touch points...")
    tenant, _ = setup(args.rows)

    print("Phase 1: the processor, one worker (this process)...")
    ours_seconds, ours_count, statuses = run_ours(tenant, args.batch)
    print(f"  {ours_count:,} in {ours_seconds:.1f} s; end states: {statuses}")

    reset(tenant)
    print("Phase 2: raw-SQL claim-and-mark over the same rows...")
    raw_seconds, raw_count = run_raw(tenant, args.batch)
    print(f"  {raw_count:,} in {raw_seconds:.1f} s")

    ours_rate = ours_count / ours_seconds if ours_seconds else 0.0
    raw_rate = raw_count / raw_seconds if raw_seconds else 0.0
    recorded = statuses.get("recorded", 0)
    rows = [
        bench.row_at_least(
            "touch points per second (processor, one worker)",
            ours_rate,
            "touch points/s",
            1000,
        ),
        bench.Row(
            "touch points per second (raw SQL claim-and-mark)",
            raw_rate,
            "touch points/s",
        ),
        bench.Row(
            "ratio processor / raw SQL",
            ours_rate / raw_rate if raw_rate else float("nan"),
            "",
        ),
        bench.row_equal(
            "touch points sent once (recorded by the outbox)",
            recorded,
            "touch points",
            args.rows,
        ),
        bench.row_equal(
            "outbound messages recorded",
            statuses.get("outbound messages", 0),
            "messages",
            args.rows,
        ),
        bench.Row("batch size", args.batch, "rows"),
    ]
    bench.write_results("touchpoints", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
