"""The ShopMonkey API down for a while: polling resumes from its cursor and misses nothing.

A connection with polling on (every 2 s; webhooks play no part) against a loopback
ShopMonkey API. Orders are created in the API before, during and after an outage
of ~30 s: first every call answered 503, then the port closed (connections
refused). The worker and the dispatcher run as in production.

Holds when every order becomes exactly one lead; polls during the outage are
recorded as failed JobExecution rows that leave the cursor where it was; the
first poll after the outage starts from the last successful poll's cursor, and
the cursor only moves forward.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.faults import harness
from tests.faults.conftest import Scenario
from tests.faults.mocks import ShopMonkeyApi

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

BEFORE, DURING_503, DURING_REFUSED, AFTER = 5, 8, 8, 4
PHASE_SECONDS = 15.0


def test_shopmonkey_down(scenario: Scenario) -> None:
    started = time.monotonic()
    base = scenario.base
    checks = harness.Checks()
    created: dict[str, datetime] = {}
    outage: dict[str, datetime] = {}
    number = iter(range(400_000, 500_000))

    def add_orders(api: ShopMonkeyApi, count: int, over: float) -> None:
        for _ in range(count):
            created[api.add_order(next(number))] = datetime.now(UTC)
            time.sleep(over / count)

    def leads() -> int:
        return scenario.scalar("SELECT count(*) FROM leads_lead")

    with ShopMonkeyApi(
        location_id=base["crm_location_id"], workflow_status_id=base["lead_column_id"]
    ) as api:
        scenario.sql(
            "UPDATE leads_crmconnection SET base_url = %s, poll_enabled = true,"
            " poll_cursor = NULL, next_poll_at = NULL",
            [api.base_url],
        )
        env = scenario.env(
            POLL_INTERVAL_SECONDS="2", SHOPMONKEY_TIMEOUT_SECONDS="3", Q_WORKERS="2"
        )
        with harness.Processes(scenario.name, env) as procs:
            worker = procs.worker()
            dispatcher = procs.dispatcher()
            add_orders(api, BEFORE, 2.0)
            assert harness.wait_for(lambda: leads() >= BEFORE, timeout=90), (
                worker.log_tail() + dispatcher.log_tail()
            )

            outage["down"] = datetime.now(UTC)
            api.set_mode("503")
            add_orders(api, DURING_503, PHASE_SECONDS)
            outage["refusing"] = datetime.now(UTC)
            api.set_mode("refuse")
            add_orders(api, DURING_REFUSED, PHASE_SECONDS)
            leads_during = leads()
            api.set_mode("up")
            outage["up"] = datetime.now(UTC)
            add_orders(api, AFTER, 2.0)
            total = len(created)
            caught_up = harness.wait_for(lambda: leads() >= total, timeout=90)
            # One more poll after the last lead, to see the cursor settle.
            last_job = scenario.scalar(
                "SELECT coalesce(max(id), 0) FROM leads_jobexecution"
            )
            harness.wait_for(
                lambda: (
                    scenario.scalar(
                        "SELECT count(*) FROM leads_jobexecution WHERE id > %s AND status <> 'running'",
                        [last_job],
                    )
                    > 0
                ),
                timeout=30,
            )
            alive = {"worker": worker.alive(), "dispatcher": dispatcher.alive()}

    jobs = scenario.sql(
        "SELECT id, status, started_at, finished_at, cursor_before, cursor_after,"
        " orders_seen, leads_created, errors, left(error_detail, 160)"
        " FROM leads_jobexecution WHERE status <> 'running' ORDER BY started_at, id"
    )
    lead_rows = scenario.sql("SELECT crm_order_id, created_at FROM leads_lead")
    lead_orders = [order_id for order_id, _ in lead_rows]
    lead_set = set(lead_orders)
    connection_cursor = scenario.scalar("SELECT poll_cursor FROM leads_crmconnection")
    failed = [j for j in jobs if j[1] == "failed"]
    succeeded = [j for j in jobs if j[1] == "succeeded"]
    failed_moved = [j for j in failed if j[5] != j[4]]
    cursors = [j[4] for j in jobs]
    backwards = [(a[0], b[0]) for a, b in itertools.pairwise(jobs) if b[4] < a[4]]
    # Each poll starts from the cursor of the last poll that succeeded before it.
    wrong_start = []
    cursor = None
    for job in jobs:
        if cursor is not None and job[4] != cursor:
            wrong_start.append((job[0], str(job[4]), str(cursor)))
        if job[1] == "succeeded":
            cursor = job[5]
    first_ok_after = [j for j in succeeded if j[2] >= outage["down"]]
    by_kind = {
        "503": [j for j in failed if "503" in (j[9] or "")],
        "refused": [j for j in failed if "reach" in (j[9] or "")],
    }
    lost = set(created) - lead_set
    newest_order = max(created.values())
    delays = [
        (lead_at - created[order_id]).total_seconds()
        for order_id, lead_at in lead_rows
        if order_id in created
    ]

    checks.check("every order became a lead", not lost and caught_up, len(lost))
    checks.check(
        "no duplicate lead",
        len(lead_orders) == len(lead_set),
        len(lead_orders) - len(lead_set),
    )
    checks.check(
        "no lead while the API was down",
        leads_during == BEFORE,
        {"leads when the API came back": leads_during},
    )
    checks.check(
        "polls during the outage recorded as failed (503 and refused)",
        bool(by_kind["503"]) and bool(by_kind["refused"]),
        {kind: len(rows) for kind, rows in by_kind.items()},
    )
    checks.check(
        "a failed poll leaves the cursor where it was",
        not failed_moved,
        [j[0] for j in failed_moved],
    )
    checks.check("the cursor never moves back", not backwards, backwards)
    checks.check(
        "every poll starts from the last successful poll's cursor",
        not wrong_start,
        wrong_start[:3],
    )
    checks.check(
        "the cursor reaches the newest order",
        connection_cursor is not None
        and connection_cursor >= newest_order - timedelta(milliseconds=1),
        {"cursor": str(connection_cursor), "newest order": str(newest_order)},
    )
    checks.check("worker and dispatcher survived", all(alive.values()), alive)

    harness.finish(
        "shopmonkey_down",
        {
            "title": "ShopMonkey API down",
            "setup": "polling every 2 s; API answers 503 for 15 s, then refuses "
            f"connections for 15 s; {len(created)} orders created before, during and "
            "after; run_worker + dispatcher",
            "counts": {
                "attempted": len(created),
                "acknowledged": len(created),
                "processed": len(lead_set & set(created)),
                "duplicates": len(lead_orders) - len(lead_set),
                "lost": len(lost),
            },
            "latency_ms": harness.latency_ms(delays),
            "latency_of": "order created in the API to lead (includes the outage)",
            "details": {
                "polls": len(jobs),
                "polls failed": len(failed),
                "polls failed by cause": {
                    kind: len(rows) for kind, rows in by_kind.items()
                },
                "polls succeeded": len(succeeded),
                "outage seconds": round(
                    (outage["up"] - outage["down"]).total_seconds(), 1
                ),
                "cursor values seen": len(set(cursors)),
                "first poll after the outage": {
                    "cursor_before": str(first_ok_after[0][4])
                    if first_ok_after
                    else None,
                    "orders_seen": first_ok_after[0][6] if first_ok_after else None,
                    "leads_created": first_ok_after[0][7] if first_ok_after else None,
                },
                "API calls": dict(api.calls),
            },
        },
        checks,
        started=started,
    )
