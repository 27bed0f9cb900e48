"""Webhook ingest under load, against the real ASGI server on loopback.

The issue: 5,000 signed deliveries of distinct orders from 50 concurrent clients
against the running ASGI server, then the same load against a bare JSON endpoint
of the same server in the same run. Report deliveries/s, p50/p99 latency, errors
and the ratio to the bare endpoint. Target: 0 errors, p99 <= 50 ms, ratio >= 0.6,
and every delivery one lead once the worker drains.

How it runs:

1. Its own embedded PostgreSQL (.var/bench), migrated; the brand "benchbrand"
   with a location and a ShopMonkey connection whose API is a local mock
   (bench/_shopmonkey_mock.py); leads and deliveries of earlier runs are deleted.
2. daphne (leadorch.asgi) and the worker (manage.py run_worker) as subprocesses;
   the load starts once GET /api/ping answers.
3. Warm-up: 200 GET /api/ping through the load generator's connections (not measured).
4. Webhook phase: every delivery a distinct website-lead order, signed
   (Standard Webhooks) just before the phase, POSTed by N concurrent clients,
   each sending its next request as soon as the previous one is answered.
   The worker runs meanwhile, as in production.
5. Drain: wait (bounded) until the bench brand holds one lead per accepted delivery,
   then until the job queue is empty (new leads queue follow-up jobs of their own).
6. Ping phase: the worker is stopped, then the same count of GET /api/ping, same
   clients, same Host header, against the same server (after its own 200-request
   warm-up): the bare endpoint's figures are the server's alone.
7. Floor (for reference, no target): the server is stopped and daphne serves
   bench/_bare_asgi.py, an application that does nothing but answer; the same
   load. No application served by daphne on this machine, under this load
   generator, can answer faster than this.

Run: .venv/bin/python bench/webhook_ingest.py [--deliveries N] [--clients N]
Logs of the server and the worker: .var/bench/logs/.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import _benchlib as bench
from _shopmonkey_mock import order_record, shopmonkey_mock

BENCHMARK = "webhook_ingest"
DELIVERIES = 5_000
CLIENTS = 50
WARMUP_REQUESTS = 200

TENANT_SLUG = "benchbrand"
TENANT_NAME = "Bench Brand"
LOCATION_NAME = "Bench Store 001"
CRM_LOCATION_ID = "b3c7a0de-0001-4a11-9e55-bench0000001"
LEAD_COLUMN_ID = "b3c7a0de-00c0-4a11-9e55-bench00000c0"
CONNECTION_NAME = "Bench ShopMonkey"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"leadorch-bench-webhook-secret!").decode()

P99_TARGET_MS = 50.0
RATIO_TARGET = 0.6
# Signatures are valid for 5 minutes; a phase that is not done by then stops.
PHASE_TIME_LIMIT_SECONDS = 240.0
DRAIN_TIMEOUT_SECONDS = 600.0
# Give up draining earlier when the lead count has not moved for this long.
DRAIN_STALL_SECONDS = 120.0
SERVER_START_TIMEOUT_SECONDS = 90.0
# Percent of a core that processes outside the benchmark may take before a phase is
# reported as measured on a busy machine.
OTHER_CPU_WARNING_PERCENT = 25.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--deliveries",
        type=int,
        default=DELIVERIES,
        help=f"signed deliveries (and pings) to send (default {DELIVERIES})",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=CLIENTS,
        help=f"concurrent clients (default {CLIENTS})",
    )
    args = parser.parse_args(argv)
    if args.deliveries < 1 or args.clients < 1:
        parser.error("--deliveries and --clients must be at least 1")
    return args


# --- Setup -------------------------------------------------------------------------------


def prepare_brand(tenant: Any, api_base_url: str) -> tuple[str, int]:
    """The bench location and connection (idempotent), with every earlier lead and delivery
    deleted. Returns the connection's public id and primary key."""
    from django_tenants.utils import tenant_context

    from leads.models import (
        CRMConnection,
        IgnoredOrder,
        JobExecution,
        Lead,
        WebhookDelivery,
    )
    from locations.models import Location

    with tenant_context(tenant):
        Location.objects.update_or_create(
            crm_location_id=CRM_LOCATION_ID,
            defaults={"name": LOCATION_NAME, "is_active": True},
        )
        connection, _ = CRMConnection.objects.update_or_create(
            name=CONNECTION_NAME,
            defaults={
                "api_key": "bench-api-key",
                "webhook_secret": WEBHOOK_SECRET,
                "base_url": api_base_url,
                "lead_workflow_status_id": LEAD_COLUMN_ID,
                "lead_name_prefix": "New Quote",
                "is_demo_mode": False,
                "is_active": True,
                # No polling: every lead of this run comes from a webhook.
                "poll_enabled": False,
            },
        )
        # The bench brand holds bench data only: start without leads, deliveries
        # and anything hanging off them.
        bench.truncate_tenant_tables(
            tenant, [Lead, WebhookDelivery, IgnoredOrder, JobExecution]
        )
        return str(connection.public_id), connection.pk


def build_orders(count: int) -> list[bytes]:
    """One webhook body per distinct website-lead order."""
    bodies = []
    for number in range(count):
        order = order_record(
            str(uuid.uuid4()),
            location_id=CRM_LOCATION_ID,
            workflow_status_id=LEAD_COLUMN_ID,
            number=100_000 + number,
        )
        order["name"] = f"New Quote - bench order {number}"
        event = {
            "apiVersion": "3",
            "operation": "INSERT",
            "table": "order",
            "data": order,
        }
        bodies.append(json.dumps(event, separators=(",", ":")).encode())
    return bodies


def sign_deliveries(
    bodies: Sequence[bytes], *, url: str, host: str
) -> list[bench.HttpRequest]:
    """Signed requests, all stamped now: valid for the next 5 minutes."""
    from standardwebhooks import Webhook

    webhook = Webhook(WEBHOOK_SECRET)
    now = datetime.now(UTC)
    timestamp = str(int(now.timestamp()))
    requests = []
    for body in bodies:
        msg_id = f"msg_{uuid.uuid4().hex[:24]}"
        headers = {
            "Host": host,
            "Content-Type": "application/json",
            "User-Agent": "Shopmonkey (+https://shopmonkey.io)",
            "webhook-id": msg_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": webhook.sign(msg_id, now, body.decode()),
            "webhook-version": "3",
            "X-Attempt": "1",
        }
        requests.append(bench.HttpRequest("POST", url, headers, body))
    return requests


def pings(count: int, *, url: str, host: str) -> list[bench.HttpRequest]:
    return [bench.HttpRequest("GET", url, {"Host": host})] * count


# --- Measuring -------------------------------------------------------------------------


def lead_count(tenant: Any, connection_pk: int) -> int:
    from django_tenants.utils import tenant_context

    from leads.models import Lead

    with tenant_context(tenant):
        return Lead.objects.filter(crm_connection_id=connection_pk).count()


def delivery_summary(tenant: Any) -> dict[str, int]:
    from django.db.models import Count
    from django_tenants.utils import tenant_context

    from leads.models import WebhookDelivery

    with tenant_context(tenant):
        rows = WebhookDelivery.objects.values("status", "result").annotate(
            n=Count("pk")
        )
        return {f"{row['status']} ({row['result'] or '-'})": row["n"] for row in rows}


def wait_for_drain(
    tenant: Any, connection_pk: int, expected: int, worker: bench.Service
) -> tuple[int, float]:
    """Poll the lead count until it reaches ``expected``, stalls or times out. Returns (leads, seconds)."""
    started = time.monotonic()
    deadline = started + DRAIN_TIMEOUT_SECONDS
    leads = lead_count(tenant, connection_pk)
    last_change, last_print = started, 0.0
    while leads < expected and time.monotonic() < deadline:
        if not worker.alive():
            print(
                f"  the worker exited (code {worker.process.returncode}); see {worker.log_path}"
            )
            break
        now = time.monotonic()
        if now - last_change > DRAIN_STALL_SECONDS:
            print(f"  no new lead for {DRAIN_STALL_SECONDS:g} s; giving up the wait")
            break
        if now - last_print >= 10:
            print(f"  {leads:,} / {expected:,} leads after {now - started:.0f} s")
            last_print = now
        time.sleep(0.25)
        count = lead_count(tenant, connection_pk)
        if count != leads:
            leads, last_change = count, time.monotonic()
    return leads, time.monotonic() - started


def describe(label: str, result: bench.LoadResult) -> None:
    statuses = ", ".join(f"HTTP {s}: {n:,}" for s, n in sorted(result.statuses.items()))
    exceptions = ", ".join(f"{e}: {n:,}" for e, n in result.exceptions.items())
    print(
        f"  {label}: {result.succeeded:,}/{result.requested:,} ok in {result.elapsed:.1f} s "
        f"({result.rate:,.0f}/s), p50 {result.latency_ms(50):.1f} ms, "
        f"p90 {result.latency_ms(90):.1f} ms, p99 {result.latency_ms(99):.1f} ms, "
        f"max {result.latency_ms(100):.1f} ms; {statuses}"
        + (f"; exceptions {exceptions}" if exceptions else "")
        + (f"; {result.not_sent:,} not sent (time limit)" if result.not_sent else "")
    )


def cpu_text(percent: dict[str, float]) -> str:
    names = {
        "_self": "bench process (load generator + mock API)",
        "_other": "other processes",
        "_stolen": bench.STOLEN_LABEL,
    }
    return ", ".join(f"{names.get(k, k)} {v:.0f}%" for k, v in percent.items())


def warn_if_contended(phase: str, percent: dict[str, float]) -> None:
    """Say so when processes outside the benchmark took a share of the two cores that
    makes the phase's figures, and the ratio built on them, untrustworthy."""
    other = percent.get("_other", 0.0)
    if other > OTHER_CPU_WARNING_PERCENT:
        print(
            f"  warning: other processes used {other:.0f}% of a core during the {phase}; "
            "its figures and the ratio reflect a shared machine, not the server"
        )


# --- Main ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bench.install_signal_handlers()
    run_started = time.monotonic()
    print(f"webhook ingest: {args.deliveries:,} deliveries, {args.clients} clients")
    print("preparing the bench database (.var/bench) ...")
    bench.django_setup()
    bench.migrate()
    tenant = bench.ensure_tenant(slug=TENANT_SLUG, name=TENANT_NAME)
    host = bench.tenant_host(TENANT_SLUG)
    bodies = build_orders(args.deliveries)

    with ExitStack() as stack:
        api = stack.enter_context(
            shopmonkey_mock(
                location_id=CRM_LOCATION_ID, workflow_status_id=LEAD_COLUMN_ID
            )
        )
        public_id, connection_pk = prepare_brand(tenant, api.base_url)
        bench.clear_job_queue()
        services = stack.enter_context(bench.Services())
        port = bench.free_port()
        web = services.start_web(port)
        worker = services.start_worker()
        base = f"http://{bench.LOOPBACK}:{port}"
        waited = bench.wait_until_ok(
            f"{base}/api/ping",
            host=host,
            timeout=SERVER_START_TIMEOUT_SECONDS,
            services=[web, worker],
        )
        print(
            f"daphne on {base} answered /api/ping after {waited:.1f} s; worker started"
        )

        meter = bench.CpuMeter(
            {
                "daphne": web.processes,
                "worker": worker.processes,
                "postgres": bench.database_processes,
            }
        )
        webhook_url = f"{base}/webhooks/shopmonkey/{public_id}/"
        ping_url = f"{base}/api/ping"

        print(
            f"webhook phase: warm-up {WARMUP_REQUESTS} pings (not measured), then "
            f"{args.deliveries:,} signed deliveries from {args.clients} clients ..."
        )
        meter.start()
        webhook = bench.run_load(
            lambda: sign_deliveries(bodies, url=webhook_url, host=host),
            clients=args.clients,
            time_limit=PHASE_TIME_LIMIT_SECONDS,
            warmup=pings(WARMUP_REQUESTS, url=ping_url, host=host),
        )
        webhook_cpu = meter.stop()
        describe("webhooks", webhook)
        print(f"  CPU during the phase (100% = one core): {cpu_text(webhook_cpu)}")
        warn_if_contended("webhook phase", webhook_cpu)

        accepted = webhook.statuses.get(202, 0)
        leads_at_end_of_load = lead_count(tenant, connection_pk)
        print(
            f"drain: {leads_at_end_of_load:,} leads when the last delivery was answered; "
            f"waiting for {accepted:,} ..."
        )
        leads, drain_seconds = wait_for_drain(tenant, connection_pk, accepted, worker)
        print(f"  {leads:,} leads after {drain_seconds:.1f} s")
        print(f"  deliveries by status: {delivery_summary(tenant)}")
        print(f"  mock ShopMonkey calls: {api.calls}")
        # Intake hands each new lead on (LEAD_INTAKE_HANDLERS); let that work finish
        # too, so the ping baseline runs on an idle system.
        queued = bench.job_queue_length()
        queue_wait = time.monotonic()
        remaining = max(0.0, DRAIN_TIMEOUT_SECONDS - drain_seconds)
        emptied = bench.wait_for_empty_queue(timeout=remaining, services=[worker])
        queue_seconds = drain_seconds + time.monotonic() - queue_wait
        print(
            f"  job queue: {queued:,} jobs left when the last lead appeared; "
            + (
                f"empty {queue_seconds:.1f} s after the last delivery"
                if emptied
                else f"still {bench.job_queue_length():,} after the wait"
            )
        )

        # The bare endpoint's figures are the server's alone: no worker competing for the CPU.
        services.stop(worker)
        print(
            f"ping phase: worker stopped; warm-up {WARMUP_REQUESTS} pings (not measured), then "
            f"{args.deliveries:,} GET /api/ping from {args.clients} clients ..."
        )
        meter = bench.CpuMeter(
            {"daphne": web.processes, "postgres": bench.database_processes}
        )
        meter.start()
        ping = bench.run_load(
            pings(args.deliveries, url=ping_url, host=host),
            clients=args.clients,
            time_limit=PHASE_TIME_LIMIT_SECONDS,
            warmup=pings(WARMUP_REQUESTS, url=ping_url, host=host),
        )
        ping_cpu = meter.stop()
        describe("pings", ping)
        print(f"  CPU during the phase (100% = one core): {cpu_text(ping_cpu)}")
        warn_if_contended("ping phase", ping_cpu)

        # The floor: daphne with an application that does no work, nothing else running.
        services.stop(web)
        floor_port = bench.free_port()
        floor_server = services.start(
            "daphne-floor",
            [
                bench.PYTHON,
                "-m",
                "daphne",
                "-b",
                bench.LOOPBACK,
                "-p",
                str(floor_port),
                "bench._bare_asgi:application",
            ],
        )
        floor_url = f"http://{bench.LOOPBACK}:{floor_port}/"
        bench.wait_until_ok(
            floor_url,
            host=host,
            timeout=SERVER_START_TIMEOUT_SECONDS,
            services=[floor_server],
        )
        print(
            f"floor: daphne serving an application that only answers; "
            f"{args.deliveries:,} GET from {args.clients} clients ..."
        )
        floor = bench.run_load(
            pings(args.deliveries, url=floor_url, host=host),
            clients=args.clients,
            time_limit=PHASE_TIME_LIMIT_SECONDS,
            warmup=pings(WARMUP_REQUESTS, url=floor_url, host=host),
        )
        describe("floor", floor)
        print("stopping the servers ...")

    ratio = webhook.rate / ping.rate if ping.rate else float("nan")
    drained = leads >= accepted
    rows = [
        bench.Row("deliveries sent", webhook.requested, "requests"),
        bench.Row("concurrent clients", args.clients, "clients"),
        bench.Row("webhook deliveries/s", webhook.rate, "deliveries/s"),
        bench.Row("webhook p50 latency", webhook.latency_ms(50), "ms"),
        bench.row_at_most(
            "webhook p99 latency", webhook.latency_ms(99), "ms", P99_TARGET_MS
        ),
        bench.row_equal(
            "webhook errors", webhook.errors, "requests", 0, target_unit=""
        ),
        bench.Row("ping requests/s", ping.rate, "requests/s"),
        bench.Row("ping p50 latency", ping.latency_ms(50), "ms"),
        bench.Row("ping p99 latency", ping.latency_ms(99), "ms"),
        bench.Row(
            "floor (daphne, an application without work) requests/s",
            floor.rate,
            "requests/s",
        ),
        bench.Row("floor p50 latency", floor.latency_ms(50), "ms"),
        bench.Row("floor p99 latency", floor.latency_ms(99), "ms"),
        bench.row_at_least("throughput ratio webhook/ping", ratio, "", RATIO_TARGET),
        bench.row_equal(
            "leads after the worker drained", leads, "leads", accepted, target_unit=""
        ),
        bench.Row(
            "worker drain time after the last delivery",
            drain_seconds if drained else None,
            "s",
        ),
        bench.Row(
            "job queue empty after the last delivery",
            queue_seconds if emptied else None,
            "s",
        ),
        bench.Row(
            "leads already created when the load ended", leads_at_end_of_load, "leads"
        ),
    ]
    groups = {
        "daphne": "daphne",
        "postgres": "postgres",
        "worker": "worker",
        "_self": "load generator + mock",
        "_other": "other processes on the machine",
        "_stolen": bench.STOLEN_LABEL,
    }
    for phase, cpu in (("webhook phase", webhook_cpu), ("ping phase", ping_cpu)):
        for name, label in groups.items():
            if name in cpu:
                rows.append(
                    bench.Row(f"{phase} CPU: {label}", cpu[name], "% of a core")
                )
    print()
    bench.write_results(BENCHMARK, rows)
    print(f"whole run: {time.monotonic() - run_started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
