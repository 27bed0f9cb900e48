"""The worker killed with SIGKILL mid-batch, again and again, on 1,000 due touch points.

1,000 leads, each with one SMS touch point due now; the brand live; SMS through
the real Twilio backend and SDK, whose requests go to a loopback stub that keeps
a ledger of every message it accepted (15 ms each, so a batch takes a while).
run_worker (2 workers, batches of 20) and the dispatcher run; while the batch is
being sent, the workers busy with it are SIGKILLed four times (run_worker starts
a fresh cluster each time, ending the other worker's batch too), the dispatcher
once (a new one is started), then the whole run_worker process tree (a new one
is started). Each kill waits until messages are
going out again (10 more in the ledger) and strikes at once, so it lands
mid-batch. Rows of a batch are claimed and marked "sending" within milliseconds,
so the kills find them "sending"; a claim whose worker died before sending is
covered in-suite (tests/touchpoints/test_processor.py). An idle worker killed
while it holds the task queue's lock is test_worker_sigkill_idle below.

The product's recovery timeouts are shortened for the processes under test
(claim lease 10 s instead of 5 min, "sending" timeout 15 s instead of 10 min;
see _launch.py); everything else is as in production.

Holds when every touch point ends sent, blocked, failed, cancelled or
needs_review (none left scheduled, claimed or sending), no recipient got two
messages (provider ledger) and no touch point has two OutboundMessage rows, every
"sent" row is in the ledger and every row that reached the provider is sent or
needs_review.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import psutil
import pytest

from tests.faults import harness
from tests.faults.conftest import Scenario
from tests.faults.mocks import TwilioStub

pytestmark = [pytest.mark.faults, pytest.mark.timeout(360)]

TOUCHPOINTS = 1_000
CHILD_KILLS = 4
OVERRIDES = {
    "touchpoints.processor.CLAIM_LEASE": 10,
    "touchpoints.processor.SENDING_TIMEOUT": 15,
}
# A worker blocked reading the task queue's pipe holds the queue's read lock.
QUEUE_READ_WAITS = {"anon_pipe_read", "pipe_read", "pipe_wait"}
FINAL = {"sent", "recorded", "blocked", "failed", "cancelled", "needs_review"}
SETTLE_TIMEOUT = 150.0


def _in_flight(scenario: Scenario, since: object) -> dict[str, int]:
    """Rows claimed (by any worker, its lease running), and rows marked sending
    after ``since`` (the previous kill: rows a killed worker left are not counted)."""
    claimed, sending, now = scenario.sql(
        "SELECT count(*) FILTER (WHERE status = 'claimed'),"
        " count(*) FILTER (WHERE status = 'sending' AND sending_at > %s), now()"
        " FROM touchpoints_touchpoint",
        [since],
    )[0]
    return {"claimed": claimed, "sending": sending, "now": now}


def _kill(processes: list[psutil.Process]) -> int:
    killed = 0
    for process in processes:
        try:
            process.kill()
            killed += 1
        except psutil.Error:
            pass
    return killed


def test_worker_sigkill(scenario: Scenario) -> None:
    started = time.monotonic()
    checks = harness.Checks()
    seeded = harness.ctl(scenario.env(), "touchpoints-seed", count=TOUCHPOINTS)
    assert seeded["touchpoints"] == TOUCHPOINTS
    kills: list[dict] = []
    with TwilioStub(delay=0.015) as twilio:
        env = scenario.env(
            MESSAGING_BACKEND="providers",
            TWILIO_ACCOUNT_SID="AC" + "0" * 32,
            TWILIO_AUTH_TOKEN="fault-token",
            TWILIO_FROM="+15005550006",
            FAULTS_TWILIO_URL=twilio.base_url,
            TOUCHPOINT_BATCH_SIZE="20",
            TOUCHPOINT_INTERVAL_SECONDS="1",
            Q_WORKERS="2",
            Q_TIMEOUT_SECONDS="30",
            FAULTS_OVERRIDES=json.dumps(OVERRIDES),
        )
        with harness.Processes(scenario.name, env) as procs:
            worker = procs.worker()
            dispatcher = procs.dispatcher()
            began = time.monotonic()
            began_at = datetime.now(UTC)
            assert harness.wait_for(
                lambda: len(twilio.ledger) >= 20, timeout=90, interval=0.2
            ), worker.log_tail() + dispatcher.log_tail()

            last_kill = {"db_time": scenario.scalar("SELECT now() - interval '1 hour'")}
            roles = harness.ClusterRoles(worker, workers=2)

            def busy_workers() -> list[psutil.Process]:
                """Workers in the middle of a task: not waiting for the next one."""
                return [p for p in roles.workers() if not harness.idle(p)]

            def kill_round(
                what: str, targets: Callable[[], list[psutil.Process]]
            ) -> None:
                """Wait until messages are going out again (10 more in the ledger),
                then kill the targets at once: mid-batch."""
                deadline = time.monotonic() + 40
                goal = len(twilio.ledger) + 10
                while True:
                    harness.wait_for(
                        lambda goal=goal: len(twilio.ledger) >= goal,
                        timeout=max(0.1, deadline - time.monotonic()),
                        interval=0.02,
                    )
                    chosen = targets()
                    if chosen or time.monotonic() > deadline:
                        break
                    goal = len(twilio.ledger) + 1
                flight = _in_flight(scenario, last_kill["db_time"])
                recent = sum(
                    1 for e in list(twilio.ledger) if e["at"] > time.time() - 0.5
                )
                killed = _kill(chosen)
                last_kill["db_time"] = flight.pop("now")
                kills.append(
                    {
                        "at_s": round(time.monotonic() - began, 1),
                        "wall": time.time(),
                        "what": what,
                        "processes": killed,
                        "in_flight": flight,
                        "sent_in_the_last_0.5_s": recent,
                        "ledger_so_far": len(twilio.ledger),
                    }
                )

            for round_number in range(CHILD_KILLS):
                kill_round("the workers busy with a batch", busy_workers)
                if round_number == 1:
                    kills.append(
                        {
                            "at_s": round(time.monotonic() - began, 1),
                            "what": "the dispatcher",
                            "processes": _kill([psutil.Process(dispatcher.pid)]),
                        }
                    )
                    procs.stop(dispatcher)
                    dispatcher = procs.dispatcher(name="dispatcher-2")
            kill_round("the whole cluster (then a new run_worker)", worker.tree)
            procs.stop(worker)
            worker = procs.worker(name="worker-2")
            killed_at = time.monotonic()

            def settled() -> bool:
                open_rows = scenario.scalar(
                    "SELECT count(*) FROM touchpoints_touchpoint WHERE NOT (status = ANY(%s))",
                    [sorted(FINAL)],
                )
                return open_rows == 0

            harness.wait_for(settled, timeout=SETTLE_TIMEOUT, interval=1.0)
            settle_seconds = time.monotonic() - killed_at
            total_seconds = time.monotonic() - began
            alive = {"worker": worker.alive(), "dispatcher": dispatcher.alive()}
        ledger = twilio.received()
        ledger_entries = list(twilio.ledger)

    rows = scenario.sql(
        "SELECT t.id, t.status, l.phone, t.finished_at, t.due_at FROM touchpoints_touchpoint t"
        " JOIN leads_lead l ON l.id = t.lead_id"
    )
    messages = Counter(
        dict(
            scenario.sql(
                'SELECT "to", count(*) FROM messaging_outboundmessage GROUP BY "to"'
            )
        )
    )
    message_status = dict(
        scenario.sql(
            "SELECT status, count(*) FROM messaging_outboundmessage GROUP BY status"
        )
    )
    by_status = Counter(status for _, status, _, _, _ in rows)
    not_final = [r for r in rows if r[1] not in FINAL]
    twice_ledger = {phone: n for phone, n in ledger.items() if n > 1}
    twice_messages = {phone: n for phone, n in messages.items() if n > 1}
    sent_not_in_ledger = [r for r in rows if r[1] == "sent" and ledger[r[2]] == 0]
    reached_but_closed = [
        r for r in rows if ledger[r[2]] and r[1] not in {"sent", "needs_review"}
    ]
    review_reached = sum(1 for r in rows if r[1] == "needs_review" and ledger[r[2]])
    review_unlinked, review_message_sent = scenario.sql(
        "SELECT count(*) FILTER (WHERE t.outbound_message_id IS NULL),"
        " count(*) FILTER (WHERE m.status = 'sent')"
        " FROM touchpoints_touchpoint t JOIN leads_lead l ON l.id = t.lead_id"
        ' LEFT JOIN messaging_outboundmessage m ON m."to" = l.phone'
        " WHERE t.status = 'needs_review'"
    )[0]
    finish_times = [(r[3] - began_at).total_seconds() for r in rows if r[3] is not None]
    worker_kills = [k for k in kills if k["what"] != "the dispatcher"]
    stamps = sorted(entry["at"] for entry in ledger_entries)
    for kill in worker_kills:
        after = [t for t in stamps if t > kill["wall"]]
        kill["sending_again_after_s"] = (
            round(after[0] - kill["wall"], 1) if after else None
        )
        del kill["wall"]
    kills_mid_batch = sum(
        1
        for k in worker_kills
        if k["in_flight"]["claimed"] + k["in_flight"]["sending"]
        and k["sent_in_the_last_0.5_s"]
    )

    checks.check(
        "every touch point in a final state",
        not not_final,
        Counter(r[1] for r in not_final),
    )
    checks.check(
        "no recipient got two messages (provider ledger)",
        not twice_ledger,
        dict(list(twice_ledger.items())[:5]),
    )
    checks.check(
        "no touch point with two OutboundMessage rows",
        not twice_messages,
        dict(list(twice_messages.items())[:5]),
    )
    checks.check(
        "every 'sent' touch point reached the provider",
        not sent_not_in_ledger,
        len(sent_not_in_ledger),
    )
    checks.check(
        "a message that reached the provider is 'sent' or 'needs_review'",
        not reached_but_closed,
        Counter(r[1] for r in reached_but_closed),
    )
    checks.check(
        "every worker kill landed mid-batch",
        kills_mid_batch == len(worker_kills),
        f"{kills_mid_batch} of {len(worker_kills)} while rows were claimed or sending "
        "and messages going out",
    )
    checks.check("worker and dispatcher running at the end", all(alive.values()), alive)

    lost = len(not_final) + len(sent_not_in_ledger)
    observations = []
    if review_unlinked:
        observations.append(
            f"{review_unlinked} touch points marked needs_review by the recovery are not "
            "linked to their OutboundMessage (outbound_message is empty: only the "
            "worker that died would have set it), although for "
            f"{review_message_sent} of them the message row records the provider's "
            "acceptance ('sent'); the message rows of the others stay 'sending' "
            f"for good ({message_status.get('sending', 0)} after the run). Whoever "
            "reviews them has to find the message by recipient."
        )
    harness.finish(
        "worker_sigkill",
        {
            "title": "Worker SIGKILL mid-batch",
            "observations": observations,
            "setup": f"{TOUCHPOINTS:,} due SMS touch points, Twilio SDK to a loopback stub "
            f"(15 ms/message), run_worker (2 workers, batches of 20) + dispatcher; "
            f"{len(kills)} SIGKILL rounds; lease 10 s, sending timeout 15 s",
            "counts": {
                "attempted": TOUCHPOINTS,
                "acknowledged": len(ledger),
                "processed": TOUCHPOINTS - len(not_final),
                "duplicates": sum(n - 1 for n in ledger.values() if n > 1)
                + sum(n - 1 for n in messages.values() if n > 1),
                "lost": lost,
                "unknown": by_status.get("needs_review", 0),
            },
            "latency_ms": harness.latency_ms(finish_times),
            "latency_of": "cluster start to each touch point's final state",
            "details": {
                "touch points by status": dict(by_status),
                "messages by status": message_status,
                "needs_review that reached the provider": review_reached,
                "needs_review not linked to their message": review_unlinked,
                "needs_review whose message row says sent": review_message_sent,
                "provider ledger entries": sum(ledger.values()),
                "kills": kills,
                "settled seconds after the last kill": round(settle_seconds, 1),
                "seconds from start to all settled": round(total_seconds, 1),
            },
        },
        checks,
        started=started,
    )


def test_worker_sigkill_idle(scenario: Scenario) -> None:
    """An idle worker SIGKILLed (as the OOM killer would): does the cluster go on?

    With the cluster idle, one worker waits in the task queue's ``get()`` holding
    the queue's read lock (a multiprocessing semaphore), the others wait for that
    lock. SIGKILL the holder: the lock dies locked, so a worker started in its
    place would wait forever; ``run_worker`` restarts the whole cluster instead
    (leadorch.worker). Holds when the workers take jobs again (a heartbeat job,
    queued by the dispatcher every second, runs) within 20 s, in a new cluster,
    with the run_worker process itself still the same.
    """
    started = time.monotonic()
    checks = harness.Checks()
    env = scenario.env(Q_WORKERS="2", WORKER_HEARTBEAT_SECONDS="1")
    sql_beat = (
        "SELECT count(*) FROM public.leadorch_processheartbeat"
        " WHERE kind = 'worker' AND last_seen_at > %s"
    )
    with harness.Processes(scenario.name, env) as procs:
        worker = procs.worker()
        procs.dispatcher()
        since = scenario.scalar("SELECT now()")
        assert harness.wait_for(
            lambda: scenario.scalar(sql_beat, [since]) > 0, timeout=60
        )
        roles = harness.ClusterRoles(worker, workers=2)
        holder: list[psutil.Process] = []
        harness.wait_for(
            lambda: bool(
                holder.extend(
                    p for p in roles.workers() if harness.wchan(p) in QUEUE_READ_WAITS
                )
                or holder
            ),
            timeout=15,
            interval=0.05,
        )
        states = {p.pid: harness.wchan(p) for p in roles.workers()}
        first_sentinel = roles.sentinel_pid
        killed = _kill(holder[:1])
        killed_at = scenario.scalar("SELECT now()")
        clock = time.monotonic()
        resumed = harness.wait_for(
            lambda: scenario.scalar(sql_beat, [killed_at]) > 0, timeout=20, interval=0.2
        )
        resumed_seconds = time.monotonic() - clock
        roles.workers()
        after = {p.pid: harness.wchan(p) for p in roles.workers()}
        same_process = worker.alive()
        restarted = "whole cluster is restarted" in worker.log_tail(200)

    checks.check(
        "an idle worker holding the queue's lock was found and killed",
        killed == 1,
        states,
    )
    checks.check(
        "the workers take jobs again within 20 s",
        resumed,
        f"{resumed_seconds:.1f} s",
    )
    checks.check(
        "the cluster was restarted whole, in the same run_worker process",
        restarted and same_process and roles.sentinel_pid != first_sentinel,
        {"sentinel before": first_sentinel, "sentinel after": roles.sentinel_pid},
    )
    harness.finish(
        "worker_sigkill_idle",
        {
            "title": "Idle worker SIGKILL",
            "setup": "run_worker (2 workers) idle + dispatcher queueing a heartbeat "
            "job every second; SIGKILL the worker waiting on the task queue",
            "counts": {
                "attempted": 1,
                "acknowledged": None,
                "processed": 1 if resumed else 0,
                "duplicates": None,
                "lost": None,
            },
            "latency_ms": None,
            "details": {
                "workers' waits before the kill (pid: wchan)": states,
                "workers' waits after the restart (pid: wchan)": after,
                "seconds from the kill to the next job": round(resumed_seconds, 1),
            },
        },
        checks,
        started=started,
    )
