"""Duplicate storm: 2,000 orders, each delivered 3 times, by 50 concurrent senders.

Every copy is signed with its own webhook-id and carries the same order record
version, as ShopMonkey redelivers; the 6,000 deliveries are shuffled so the
copies of one order race each other. The inbox keeps one row per record version
(its unique constraint on connection, table, record id and version), so:
every delivery answered 2xx (202 for the copy stored, 200 "duplicate" for the
others), 2,000 inbox rows, 2,000 leads once the worker drains, no 5xx.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from tests.faults import harness, load
from tests.faults.conftest import WEBHOOK_SECRET, Scenario
from tests.faults.mocks import ShopMonkeyApi

pytestmark = [pytest.mark.faults, pytest.mark.timeout(420)]

ORDERS = 2_000
COPIES = 3
CLIENTS = 50
DRAIN_TIMEOUT = 240.0


def test_duplicate_storm(scenario: Scenario) -> None:
    started = time.monotonic()
    base = scenario.base
    checks = harness.Checks()
    with ShopMonkeyApi(
        location_id=base["crm_location_id"], workflow_status_id=base["lead_column_id"]
    ) as api:
        scenario.sql("UPDATE leads_crmconnection SET base_url = %s", [api.base_url])
        orders = [load.order_event(api, 200_000 + n) for n in range(ORDERS)]
        copies = [n for n in range(ORDERS) for _ in range(COPIES)]
        random.Random(5).shuffle(copies)
        bodies = [orders[n][1] for n in copies]

        with harness.Processes(scenario.name, scenario.env(Q_WORKERS="2")) as procs:
            port = harness.free_port()
            web = procs.web(port)
            worker = procs.worker()
            harness.wait_until_ok(
                f"http://{harness.LOOPBACK}:{port}/api/ping",
                host=base["host"],
                timeout=90,
                services=[web, worker],
            )
            run = load.send_deliveries(
                bodies,
                brand_host=base["host"],
                port=port,
                path=f"/webhooks/shopmonkey/{base['connection_public_id']}/",
                secret=WEBHOOK_SECRET,
                clients=CLIENTS,
                timeout=30.0,
            )
            load_ended = time.monotonic()

            def drained() -> bool:
                return not scenario.scalar(
                    "SELECT count(*) FROM leads_webhookdelivery WHERE status <> 'processed'"
                )

            harness.wait_for(drained, timeout=DRAIN_TIMEOUT, interval=1.0)
            drain_seconds = time.monotonic() - load_ended
            alive = {s.name: s.alive() for s in (web, worker)}

    statuses = run.statuses()
    by_order: dict[int, Counter[str]] = {}
    for attempt in run.attempts:
        by_order.setdefault(copies[attempt.order], Counter())[str(attempt.status)] += 1
    stored_once = sum(1 for c in by_order.values() if c["202"] == 1)
    acknowledged = sum(
        n for s, n in statuses.items() if s.isdigit() and 200 <= int(s) < 300
    )
    server_errors = sum(n for s, n in statuses.items() if s.isdigit() and int(s) >= 500)
    no_answer = sum(n for s, n in statuses.items() if not s.isdigit())
    inbox_rows, inbox_versions = scenario.sql(
        "SELECT count(*), count(DISTINCT (record_id, record_version)) FROM leads_webhookdelivery"
    )[0]
    inbox_status = dict(
        scenario.sql(
            "SELECT status, count(*) FROM leads_webhookdelivery GROUP BY status"
        )
    )
    lead_orders = [
        row[0] for row in scenario.sql("SELECT crm_order_id FROM leads_lead")
    ]
    order_ids = {order_id for order_id, _ in orders}
    leads, distinct_leads = len(lead_orders), len(set(lead_orders))
    lost = len(order_ids - set(lead_orders))
    strays = len(set(lead_orders) - order_ids)

    checks.check(
        "every delivery answered 2xx", acknowledged == len(bodies), dict(statuses)
    )
    checks.check("no 5xx answer", server_errors == 0, server_errors)
    checks.check("no delivery without an answer", no_answer == 0, no_answer)
    checks.check(
        "exactly one copy of each order stored (202), the others 200 duplicate",
        stored_once == ORDERS and statuses.get("202", 0) == ORDERS,
        {"orders stored once": stored_once, "202": statuses.get("202", 0)},
    )
    checks.check(
        "one inbox row per record version",
        inbox_rows == ORDERS and inbox_versions == ORDERS,
        {"rows": inbox_rows, "record versions": inbox_versions},
    )
    checks.check(
        "every inbox row processed", inbox_status == {"processed": ORDERS}, inbox_status
    )
    checks.check(
        f"exactly {ORDERS:,} leads, one per order",
        leads == ORDERS and distinct_leads == ORDERS and lost == 0 and strays == 0,
        {"leads": leads, "distinct orders": distinct_leads, "missing": lost},
    )
    checks.check("daphne and the worker still running", all(alive.values()), alive)

    harness.finish(
        "duplicate_storm",
        {
            "title": "Duplicate storm",
            "setup": f"{ORDERS:,} orders x {COPIES} deliveries, {CLIENTS} concurrent senders, "
            "shuffled; daphne + run_worker (2 workers)",
            "counts": {
                "attempted": len(bodies),
                "acknowledged": acknowledged,
                "processed": leads,
                "duplicates": (leads - distinct_leads) + (inbox_rows - inbox_versions),
                "lost": lost,
            },
            "latency_ms": harness.latency_ms(run.latencies()),
            "latency_of": "answer to each delivery (all 6,000)",
            "details": {
                "orders": ORDERS,
                "statuses": dict(sorted(statuses.items())),
                "inbox rows": inbox_rows,
                "inbox by status": inbox_status,
                "redeliveries recognised (200 duplicate)": statuses.get("200", 0),
                "load seconds": round(run.elapsed, 1),
                "deliveries per second": round(len(bodies) / run.elapsed, 1)
                if run.elapsed
                else None,
                "drain seconds after the load": round(drain_seconds, 1),
                "mock API calls": dict(api.calls),
            },
        },
        checks,
        started=started,
    )
