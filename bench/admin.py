"""Admin at scale: the lead list, a lead's page and the dashboard with 100,000 leads.

The bench brand holds 100,000 leads spread over 200 locations and a year, with
realistic stage timestamps (CRM -> ingested -> first touch -> reply -> booked ->
completed or lost), about 1.5 outbound messages per lead, a conversation with AI
costs for the leads who replied, an appointment for each booked lead and a few
opt-outs. Rows are written with COPY; a second run reuses them when they are
there (and recent), ``--reseed`` writes them again.

Timed in this process with Django's test ``Client`` (a logged-in superuser, the
brand's host), each page requested once to warm up, then ``--runs`` times:

- the lead changelist ``/admin/leads/lead/`` (target: median <= 300 ms),
- one busy lead's page ``/admin/leads/lead/<id>/change/`` (history, messages,
  conversation, appointment; target: median <= 300 ms),
- the dashboard ``/admin/leads/lead/dashboard/``, default period (the last 30
  days; target: median <= 500 ms),

and the same list and dashboard for a location-limited staff user (one
location). Each page's query count is measured on one more request.

    .venv/bin/python bench/admin.py [--leads 100000] [--locations 200] [--runs 7] [--reseed]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as bench

SLUG = "benchadmin"
LEADS, LOCATIONS, RUNS = 100_000, 200, 7
HISTORY_DAYS = 365
SEED = 20261122
ADMIN_USER, STORE_USER = "bench-admin", "bench-store"
PASSWORD = "bench-admin-pass"  # noqa: S105 - a bench-only account in the bench database


# --- Writing rows fast ---------------------------------------------------------------------


def copy_rows(model: Any, rows: Iterable[dict[str, Any]]) -> int:
    """COPY ``rows`` (dicts by attribute name) into ``model``'s table in the current
    schema. Missing fields take the field's default; the id comes from its sequence."""
    from django.db import connection
    from django.db.models import JSONField
    from psycopg.types.json import Jsonb

    fields = [
        f
        for f in model._meta.concrete_fields
        if not getattr(f, "generated", False) and not f.primary_key
    ]
    json_fields = {f.attname for f in fields if isinstance(f, JSONField)}
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    table = f"{quote(connection.schema_name)}.{quote(model._meta.db_table)}"
    written = 0
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            values = []
            for f in fields:
                value = row[f.attname] if f.attname in row else f.get_default()
                if f.attname in json_fields:
                    value = Jsonb(value)
                values.append(value)
            copy.write_row(values)
            written += 1
    return written


def ids_in_order(model: Any, after: int) -> list[int]:
    """The ids COPY gave the rows just written (a sequence hands them out in order)."""
    return list(
        model.objects.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)
    )


def last_id(model: Any) -> int:
    from django.db.models import Max

    return model.objects.aggregate(top=Max("pk"))["top"] or 0


# --- The data ------------------------------------------------------------------------------


def lognormal_seconds(rng: random.Random, median: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(median), sigma)


def plan_leads(
    rng: random.Random, count: int, locations: list[Any], now: datetime
) -> Iterator[dict[str, Any]]:
    """Leads in created order, each with its stage timestamps and what hangs off it."""
    span = HISTORY_DAYS * 86400
    offsets = sorted(rng.uniform(600, span) for _ in range(count))
    # Per location and bay, when the bay is next free (appointments never overlap).
    free: dict[tuple[int, int], datetime] = {}
    for index, offset in enumerate(reversed(offsets)):
        location = locations[rng.randrange(len(locations))]
        created = now - timedelta(seconds=offset)

        def at(moment: datetime | None) -> datetime | None:
            return moment if moment is not None and moment < now else None

        lead: dict[str, Any] = {
            "index": index,
            "location_id": location.pk,
            "bays": location.bays,
            "created_at": created,
            "updated_at": created,
            "crm_created_at": created - timedelta(seconds=rng.uniform(3, 90)),
            "ingested_at": created,
            "public_id": uuid.uuid4(),
            "first_name": f"Customer{index}",
            "last_name": "Bench",
            "email": f"lead{index}@example.com",
            "phone": f"+1555{index:07d}",
            "vehicle_year": rng.randint(2008, 2026),
            "vehicle_make": rng.choice(["Toyota", "Honda", "Ford", "Tesla", "BMW"]),
            "vehicle_model": rng.choice(["Camry", "Civic", "F-150", "Model 3", "X5"]),
            "source": "webhook",
            "crm_order_id": f"bench-{index}",
        }
        contacted = engaged = qualified = booked = lost = None
        if rng.random() < 0.92:
            contacted = at(created + timedelta(seconds=lognormal_seconds(rng, 40, 0.7)))
        if contacted and rng.random() < 0.45:
            engaged = at(
                contacted + timedelta(seconds=lognormal_seconds(rng, 1200, 1.2))
            )
        if engaged and rng.random() < 0.6:
            qualified = at(
                engaged + timedelta(seconds=lognormal_seconds(rng, 600, 0.8))
            )
        if engaged and rng.random() < 0.55:
            booked = at(
                (qualified or engaged)
                + timedelta(seconds=lognormal_seconds(rng, 7200, 1.0))
            )
        appointment = None
        completed = None
        if booked:
            bay = rng.randrange(1, lead["bays"] + 1)
            wanted = (booked + timedelta(days=rng.randint(1, 10))).replace(
                minute=0, second=0, microsecond=0
            )
            starts = max(wanted, free.get((location.pk, bay), wanted))
            ends = starts + timedelta(hours=2)
            free[(location.pk, bay)] = ends
            if ends < now:
                status = rng.choices(
                    ["completed", "no_show", "cancelled"], [80, 10, 10]
                )[0]
            else:
                status = rng.choices(["booked", "cancelled"], [90, 10])[0]
            if status == "completed":
                completed = ends + timedelta(hours=1)
                completed = completed if completed < now else None
                status = status if completed else "booked"
            appointment = {
                "bay": bay,
                "starts_at": starts,
                "ends_at": ends,
                "status": status,
                "source": rng.choices(["chat", "sms", "staff"], [60, 15, 25])[0],
                "created_at": booked,
                "updated_at": booked,
            }
            if status == "cancelled":
                appointment["cancelled_at"] = min(now, booked + timedelta(days=1))
        elif created < now - timedelta(days=7) and rng.random() < 0.3:
            lost = created + timedelta(days=7)
        lead.update(
            first_contacted_at=contacted,
            engaged_at=engaged,
            qualified_at=qualified,
            booked_at=booked,
            completed_at=completed,
            lost_at=lost,
            status=(
                "completed"
                if completed
                else "appointment_set"
                if booked
                else "lost"
                if lost
                else "qualified"
                if qualified
                else "engaged"
                if engaged
                else "contacted"
                if contacted
                else "new"
            ),
            appointment=appointment,
        )
        yield lead


MESSAGE_FIELDS = {"subject": "", "detail": "", "is_automated": True}


def plan_messages(
    rng: random.Random, lead: dict[str, Any], lead_id: int, now: datetime
) -> Iterator[dict[str, Any]]:
    def message(moment: datetime, kind: str, status: str, reason: str = "") -> dict:
        sms = rng.random() < 0.7
        return {
            **MESSAGE_FIELDS,
            "public_id": uuid.uuid4(),
            "created_at": moment,
            "updated_at": moment,
            "lead_id": lead_id,
            "location_id": lead["location_id"],
            "channel": "sms" if sms else "email",
            "kind": kind,
            "to": lead["phone"] if sms else lead["email"],
            "subject": "" if sms else "Your quote",
            "body": "Thanks for your request! When would suit you?",
            "status": status,
            "block_reason": reason,
            "backend": "" if status == "blocked" else "outbox",
            "attempted_at": None if status == "blocked" else moment,
            "sent_at": moment if status in ("sent", "recorded") else None,
        }

    contacted = lead["first_contacted_at"]
    if contacted is None:
        yield message(
            lead["created_at"] + timedelta(seconds=1),
            "cadence",
            "blocked",
            rng.choice(["quiet_hours", "not_whitelisted", "no_address"]),
        )
        return
    first = rng.choices(["sent", "recorded", "failed", "unknown"], [85, 10, 3, 2])[0]
    yield message(contacted, "cadence", first)
    if lead["engaged_at"] is None:
        for days in (1, 3):
            moment = contacted + timedelta(days=days)
            if moment >= now or rng.random() < 0.4:
                continue
            status = rng.choices(["sent", "blocked", "failed"], [75, 20, 5])[0]
            reason = (
                rng.choice(["quiet_hours", "daily_cap", "opted_out"])
                if status == "blocked"
                else ""
            )
            yield message(moment, "cadence", status, reason)
    if lead["booked_at"] is not None:
        yield message(lead["booked_at"] + timedelta(seconds=5), "confirmation", "sent")


def plan_chat(
    rng: random.Random, lead: dict[str, Any], session_id: int, now: datetime
) -> Iterator[dict[str, Any]]:
    moment = lead["engaged_at"]
    for _ in range(rng.randint(1, 3)):
        if moment >= now:
            return
        yield {
            "session_id": session_id,
            "role": "customer",
            "body": "How much for ceramic tint on my car?",
            "created_at": moment,
        }
        moment += timedelta(seconds=rng.uniform(2, 8))
        input_tokens, output_tokens = rng.randint(800, 4000), rng.randint(60, 400)
        cost = Decimal(input_tokens * 3 + output_tokens * 15) / Decimal(1_000_000)
        yield {
            "session_id": session_id,
            "role": "assistant",
            "body": "Ceramic tint for a sedan is $449. Shall I book you in?",
            "provider": "anthropic",
            "model": "claude-haiku",
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost": cost.quantize(Decimal("0.000001")),
            "latency_ms": rng.randint(700, 3000),
            "created_at": moment,
        }
        moment += timedelta(seconds=rng.uniform(30, 600))


def seed(tenant: Any, leads: int, locations: int) -> float:
    """Write the bench brand's data; returns the seconds it took."""
    from django.db import connection

    from appointments.models import Appointment
    from chat.models import ChatMessage, ChatSession
    from leads.models import Lead
    from locations.models import Location, ServiceCatalogItem
    from messaging.models import OptOut, OutboundMessage

    started = time.perf_counter()
    rng = random.Random(SEED)
    now = datetime.now(UTC)
    bench.truncate_tenant_tables(tenant, [Lead, Location, ServiceCatalogItem, OptOut])
    places = Location.objects.bulk_create(
        Location(
            name=f"Tint Store {n:03d}",
            crm_location_id=f"bench-loc-{n:03d}",
            time_zone=rng.choice(
                ["America/Los_Angeles", "America/Denver", "America/Chicago",
                 "America/New_York"]
            ),
            region="CA",
            phone=f"+1619555{n:04d}",
            bays=rng.randint(2, 4),
        )
        for n in range(locations)
    )  # fmt: skip
    service = ServiceCatalogItem.objects.create(
        code="bench-tint",
        category="Window tint",
        name="Ceramic tint, sedan",
        price_cents=44900,
        duration_minutes=120,
    )
    plans = list(plan_leads(rng, leads, places, now))
    before = last_id(Lead)
    copy_rows(Lead, plans)
    lead_ids = ids_in_order(Lead, before)
    assert len(lead_ids) == len(plans)
    print(f"  {len(plans):,} leads ({time.perf_counter() - started:.0f} s)")

    copied = copy_rows(
        OutboundMessage,
        (
            row
            for plan, lead_id in zip(plans, lead_ids, strict=True)
            for row in plan_messages(rng, plan, lead_id, now)
        ),
    )
    print(f"  {copied:,} outbound messages ({time.perf_counter() - started:.0f} s)")

    chatty = [
        (plan, lead_id)
        for plan, lead_id in zip(plans, lead_ids, strict=True)
        if plan["engaged_at"] is not None
    ]
    before = last_id(ChatSession)
    copy_rows(
        ChatSession,
        (
            {
                "public_id": uuid.uuid4(),
                "lead_id": lead_id,
                "created_at": plan["engaged_at"],
                "updated_at": plan["engaged_at"],
                "last_message_at": plan["engaged_at"],
            }
            for plan, lead_id in chatty
        ),
    )
    session_ids = ids_in_order(ChatSession, before)
    copied = copy_rows(
        ChatMessage,
        (
            row
            for (plan, _), session_id in zip(chatty, session_ids, strict=True)
            for row in plan_chat(rng, plan, session_id, now)
        ),
    )
    print(
        f"  {len(session_ids):,} conversations, {copied:,} chat messages "
        f"({time.perf_counter() - started:.0f} s)"
    )

    copied = copy_rows(
        Appointment,
        (
            {
                **plan["appointment"],
                "public_id": uuid.uuid4(),
                "lead_id": lead_id,
                "location_id": plan["location_id"],
                "service_id": service.pk,
                "price_cents": service.price_cents,
                "crm_sync_status": "synced",
                "crm_synced_at": plan["appointment"]["created_at"],
            }
            for plan, lead_id in zip(plans, lead_ids, strict=True)
            if plan["appointment"] is not None
        ),
    )
    opt_outs = copy_rows(
        OptOut,
        (
            {
                "channel": "sms",
                "address": plan["phone"],
                "source": "sms_keyword",
                "created_at": plan["first_contacted_at"] + timedelta(minutes=5),
                "updated_at": plan["first_contacted_at"] + timedelta(minutes=5),
            }
            for plan in plans
            if plan["first_contacted_at"] is not None
            and plan["engaged_at"] is None
            and plan["first_contacted_at"] < now - timedelta(minutes=5)
            and rng.random() < 0.02
        ),
    )
    print(
        f"  {copied:,} appointments, {opt_outs:,} opt-outs "
        f"({time.perf_counter() - started:.0f} s)"
    )
    with connection.cursor() as cursor:
        for model in (Lead, OutboundMessage, ChatSession, ChatMessage, Appointment,
                      OptOut, Location):  # fmt: skip
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    return time.perf_counter() - started


def data_is_there(leads: int, locations: int) -> bool:
    """The data of an earlier run, if it has the same size and its newest lead is of today."""
    from django.db.models import Max

    from leads.models import Lead
    from locations.models import Location
    from messaging.models import OutboundMessage

    if Location.objects.count() != locations or Lead.objects.count() != leads:
        return False
    if not OutboundMessage.objects.exists():
        return False
    newest = Lead.objects.aggregate(newest=Max("created_at"))["newest"]
    return newest is not None and newest > datetime.now(UTC) - timedelta(days=1)


def ensure_users() -> tuple[Any, Any]:
    from django.contrib.auth.models import Permission, User

    from locations.models import Location, StaffMembership

    admin, _ = User.objects.get_or_create(
        username=ADMIN_USER, defaults={"is_staff": True, "is_superuser": True}
    )
    store, _ = User.objects.get_or_create(
        username=STORE_USER, defaults={"is_staff": True}
    )
    store.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="leads", codename__in=["view_lead", "change_lead"]
        )
    )
    location = Location.objects.order_by("name").first()
    StaffMembership.objects.filter(user=store).exclude(location=location).delete()
    StaffMembership.objects.get_or_create(user=store, location=location)
    return admin, store


def busy_lead_id() -> int:
    """A lead with history, messages, a conversation and an appointment."""
    from leads.models import Lead

    lead = (
        Lead.objects.filter(
            status="appointment_set",
            chat_session__isnull=False,
            appointments__isnull=False,
        )
        .order_by("-created_at")
        .values_list("pk", flat=True)
        .first()
    )
    if lead is None:
        lead = Lead.objects.order_by("-created_at").values_list("pk", flat=True).first()
    return lead


# --- Timing --------------------------------------------------------------------------------


def time_page(client: Any, url: str, runs: int) -> tuple[float, int, list[float]]:
    """Median milliseconds over ``runs`` requests (after one warm-up) and the queries of one."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}")
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return statistics.median(timings), len(queries), timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=LEADS)
    parser.add_argument("--locations", type=int, default=LOCATIONS)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument(
        "--reseed", action="store_true", help="write the data again even if it is there"
    )
    args = parser.parse_args()

    bench.django_setup()
    bench.migrate()
    from django.test import Client
    from django_tenants.utils import tenant_context

    from appointments.models import Appointment
    from chat.models import ChatMessage
    from leads.models import Lead
    from messaging.models import OptOut, OutboundMessage

    tenant = bench.ensure_tenant(slug=SLUG, name="Bench Admin")
    host = bench.tenant_host(SLUG)
    with tenant_context(tenant):
        seeded = None
        if args.reseed or not data_is_there(args.leads, args.locations):
            print(f"seeding {args.leads:,} leads over {args.locations} locations ...")
            seeded = seed(tenant, args.leads, args.locations)
        else:
            print("reusing the data of an earlier run (--reseed to write it again)")
        admin, store = ensure_users()
        lead_id = busy_lead_id()
        counts = {
            "leads": Lead.objects.count(),
            "messages": OutboundMessage.objects.count(),
            "chat": ChatMessage.objects.count(),
            "appointments": Appointment.objects.count(),
            "opt_outs": OptOut.objects.count(),
        }

    pages = [
        ("lead list", "/admin/leads/lead/", 300),
        ("lead page", f"/admin/leads/lead/{lead_id}/change/", 300),
        ("dashboard (last 30 days)", "/admin/leads/lead/dashboard/", 500),
    ]
    rows: list[bench.Row] = []
    for who, user, which in (
        ("superuser", admin, pages),
        ("location staff", store, [pages[0], pages[2]]),
    ):
        client = Client(HTTP_HOST=host)
        with tenant_context(tenant):  # the session lives in the brand's schema
            client.force_login(user)
        for label, url, target in which:
            median, queries, timings = time_page(client, url, args.runs)
            print(
                f"  {who}, {label}: median {median:.0f} ms "
                f"(min {min(timings):.0f}, max {max(timings):.0f}), {queries} queries"
            )
            rows.append(
                bench.row_at_most(f"{label}, {who}: median", median, "ms", target)
            )
            rows.append(bench.Row(f"{label}, {who}: queries", queries, "queries"))

    rows += [
        bench.Row("leads", counts["leads"], "rows"),
        bench.Row("locations", args.locations, "rows"),
        bench.Row("outbound messages", counts["messages"], "rows"),
        bench.Row("chat messages", counts["chat"], "rows"),
        bench.Row("appointments", counts["appointments"], "rows"),
        bench.Row("opt-outs", counts["opt_outs"], "rows"),
        bench.Row("runs per page", args.runs, "requests"),
    ]
    if seeded is not None:
        rows.append(bench.Row("seeding time", seeded, "s"))
    bench.write_results("admin", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
