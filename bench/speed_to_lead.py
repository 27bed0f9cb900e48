"""Speed to lead: from a signed webhook received to the lead's first message recorded.

The real web server (daphne) and worker (run_worker) run against the bench
database; ShopMonkey is a mock on loopback that answers every call after
300 ms. Each of 200 new website quotes arrives as a signed webhook whose order
does not carry its customer and vehicle, so intake fetches both (in parallel)
before the lead exists; the cadence then records the first SMS and email
(outbox backend, brand live).

Measured per lead, on the server's clock: WebhookDelivery.received_at to the
first OutboundMessage.created_at. Target: p95 <= 1.5 s.

    .venv/bin/python bench/speed_to_lead.py [--leads 200] [--rate 3] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as bench
import _shopmonkey_mock as shopmonkey

LEADS = 200
RATE = 3.0  # new leads per second, spaced evenly
WORKERS = 4
API_DELAY = 0.3
SLUG = "benchspeed"
SECRET = "whsec_YmVuY2gtc3BlZWQtdG8tbGVhZC1zZWNyZXQtMzItYnl0ZXM="  # noqa: S105 - a bench-only secret


def setup(api_url: str) -> tuple[object, str]:
    from django_tenants.utils import (
        get_public_schema_name,
        schema_context,
        tenant_context,
    )

    from chat.models import ChatSession
    from leads.models import (
        CRMConnection,
        IgnoredOrder,
        JobExecution,
        Lead,
        WebhookDelivery,
    )
    from locations.models import Location
    from messaging.models import MessagingPolicy, OutboundMessage
    from tenants.models import Tenant
    from touchpoints import services as cadence
    from touchpoints.models import Cadence, CadenceEnrollment, CadenceStep, TouchPoint

    tenant = bench.ensure_tenant(slug=SLUG, name="Bench Speed")
    with schema_context(get_public_schema_name()):
        Tenant.objects.filter(pk=tenant.pk).update(outbound_mode="live")
    with tenant_context(tenant):
        bench.truncate_tenant_tables(
            tenant,
            [OutboundMessage, TouchPoint, CadenceEnrollment, ChatSession, Lead, WebhookDelivery, IgnoredOrder, JobExecution,
             CRMConnection, CadenceStep, Cadence, Location],
        )  # fmt: skip
        MessagingPolicy.objects.get_or_create(singleton=True)
        Location.objects.create(
            name="Bench store",
            crm_location_id=shopmonkey.FIXTURE_LOCATION_ID,
            time_zone=bench.daytime_zone(datetime.now(UTC)),
            bays=3,
        )
        connection = CRMConnection.objects.create(
            name="ShopMonkey (mock)",
            api_key="sk-bench",
            webhook_secret=SECRET,
            base_url=api_url,
            lead_workflow_status_id=shopmonkey.FIXTURE_LEAD_COLUMN_ID,
            poll_enabled=False,
        )
        cadence.cadence_default_ensure()
    return tenant, str(connection.public_id)


def delivery(order_id: str) -> tuple[bytes, dict[str, str]]:
    """A signed INSERT event for a new website quote; no customer or vehicle inside."""
    from leads.sample_orders import encode, sign_event

    record = shopmonkey.order_record(
        order_id,
        location_id=shopmonkey.FIXTURE_LOCATION_ID,
        workflow_status_id=shopmonkey.FIXTURE_LEAD_COLUMN_ID,
    )
    body = encode(
        {"apiVersion": "3", "operation": "INSERT", "table": "order", "data": record}
    )
    return body, sign_event(secret=SECRET, body=body)


async def send_all(
    url: str, host: str, deliveries: list[tuple[bytes, dict[str, str]]], rate: float
) -> list[int]:
    import httpx

    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:

        async def one(body: bytes, headers: dict[str, str]) -> None:
            try:
                response = await client.post(
                    url, content=body, headers={**headers, "host": host}
                )
                statuses.append(response.status_code)
            except httpx.HTTPError:
                statuses.append(0)

        tasks = []
        started = time.monotonic()
        for index, (body, headers) in enumerate(deliveries):
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(body, headers)))
        await asyncio.gather(*tasks)
    return statuses


def measure(tenant: object) -> tuple[list[float], int, int]:
    from django.db.models import Min, OuterRef, Subquery
    from django_tenants.utils import tenant_context

    from leads.models import Lead, WebhookDelivery
    from messaging.models import OutboundMessage

    with tenant_context(tenant):
        first_message = (
            OutboundMessage.objects.filter(lead=OuterRef("pk"))
            .values("lead")
            .annotate(at=Min("created_at"))
            .values("at")
        )
        leads = Lead.objects.annotate(
            first_message_at=Subquery(first_message)
        ).values_list("crm_order_id", "first_message_at")
        received = dict(WebhookDelivery.objects.values_list("record_id", "received_at"))
        seconds = [
            (first - received[order_id]).total_seconds()
            for order_id, first in leads
            if first is not None and order_id in received
        ]
        return seconds, Lead.objects.count(), OutboundMessage.objects.count()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=LEADS)
    parser.add_argument("--rate", type=float, default=RATE, help="new leads per second")
    parser.add_argument(
        "--workers", type=int, default=WORKERS, help="worker processes (Q_WORKERS)"
    )
    parser.add_argument(
        "--api-delay", type=float, default=API_DELAY, help="seconds per ShopMonkey call"
    )
    args = parser.parse_args()

    bench.install_signal_handlers()
    bench.django_setup()
    bench.migrate()
    bench.clear_job_queue()
    env = {
        **bench.configure_environment(),
        "MESSAGING_BACKEND": "outbox",
        "Q_WORKERS": str(args.workers),
    }
    port = bench.free_port()
    with (
        shopmonkey.shopmonkey_mock(delay=args.api_delay) as api,
        bench.Services(env) as services,
    ):
        tenant, connection_id = setup(api.base_url)
        host = bench.tenant_host(SLUG)
        web = services.start_web(port)
        worker = services.start_worker()
        bench.wait_until_ok(
            f"http://{bench.LOOPBACK}:{port}/api/ping",
            timeout=60,
            services=[web, worker],
        )
        deliveries = [delivery(str(uuid.uuid4())) for _ in range(args.leads)]
        url = f"http://{bench.LOOPBACK}:{port}/webhooks/shopmonkey/{connection_id}/"
        print(
            f"Sending {args.leads} new quotes at {args.rate}/s (ShopMonkey answers after {args.api_delay * 1000:.0f} ms)..."
        )
        statuses = asyncio.run(send_all(url, host, deliveries, args.rate))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seconds, _, messages = measure(tenant)
            if len(seconds) >= args.leads:
                break
            time.sleep(0.5)
        calls = api.calls

    accepted = sum(1 for status in statuses if status == 202)
    rows = [
        bench.row_at_most("speed to lead p50", bench.percentile(seconds, 50), "s", 1.5),
        bench.row_at_most("speed to lead p95", bench.percentile(seconds, 95), "s", 1.5),
        bench.Row("speed to lead max", max(seconds) if seconds else float("nan"), "s"),
        bench.row_equal(
            "deliveries accepted (202)", accepted, "deliveries", args.leads
        ),
        bench.row_equal(
            "leads with a first message", len(seconds), "leads", args.leads
        ),
        bench.Row("messages recorded (first SMS and email)", messages, "messages"),
        bench.Row(
            "ShopMonkey calls (customer + vehicle)",
            calls["customer"] + calls["vehicle"],
            "calls",
        ),
        bench.Row("ShopMonkey delay per call", args.api_delay * 1000, "ms"),
        bench.Row("arrival rate", args.rate, "leads/s"),
        bench.Row("worker processes", args.workers, "processes"),
    ]
    bench.write_results("speed_to_lead", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
