"""The scale-out topology with Redis, as real processes on the test database.

redis-server (Debian's, on a free loopback port, nothing persisted), two web
processes (daphne, A and B), two workers (run_worker) and two dispatchers, all
with REDIS_URL, so the job queue, the WebSocket channel layer and the cache are
Redis. docker-compose.yml runs the same topology for those with Docker.

- Signed webhooks posted alternately to A and B (and some delivered again to
  the other process, as ShopMonkey's retries are) become leads exactly once.
- Each lead's due touch points are processed once, with both workers and both
  dispatchers competing for them: one OutboundMessage per touch point, nothing
  sent twice.
- A customer's WebSocket on A receives, live, a staff reply made in the admin on
  B: the Redis channel layer crosses processes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db.models import Count
from django.utils import timezone
from django_q.models import OrmQ
from django_tenants.utils import get_public_schema_name, schema_context

from chat import services as chat_services
from chat.models import ChatMessage, ChatSession, MessageRole
from leadorch.models import ProcessHeartbeat, ProcessKind
from leads.models import CRMConnection, Lead, WebhookDelivery
from leads.sample_orders import encode, sample_order_event, sign_event
from messaging.models import MessageKind, MessagingPolicy, OutboundMessage
from tenants.models import Tenant
from tests.browser.conftest import ARTIFACTS, _failed
from tests.e2e.shopmonkey_api import ShopMonkeyAPI, shopmonkey_api
from tests.e2e.stack import (
    REDIS_SERVER,
    Process,
    Stack,
    daytime_zone,
    free_port,
    running_stack,
    server_env,
    start_redis,
)
from tests.factories import LocationFactory, SuperUserFactory
from tests.leads.conftest import make_connection
from tests.leads.shopmonkey_fakes import LEAD_COLUMN_ID, LOCATION_ID, WEBHOOK_SECRET
from touchpoints import services as cadence
from touchpoints.models import CadenceEnrollment, TouchPoint, TouchPointStatus

pytestmark = pytest.mark.scaleout

HOST = "alpha.localhost"
LEADS = 12
REDELIVERED = 4  # of them, delivered a second time to the other web process
# Steps made due by hand after the first two: another SMS and another email.
LATER_STEPS = (3, 4)
WAIT_SECONDS = 45
STAFF_PASSWORD = "staff-pass"
WS_CLIENT = Path(__file__).resolve().parents[2] / "bench" / "_ws_client.py"


def _ws_client() -> Any:
    """bench/_ws_client.py: a minimal RFC 6455 client over asyncio."""
    spec = importlib.util.spec_from_file_location("scaleout_ws_client", WS_CLIENT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Topology:
    stack: Stack
    redis_port: int
    web: dict[str, tuple[Process, int]]  # "A"/"B" -> (process, port)
    workers: list[Process]
    dispatchers: list[Process]


@pytest.fixture
def api() -> Iterator[ShopMonkeyAPI]:
    with shopmonkey_api() as mock:
        yield mock


@pytest.fixture
def topology(
    tenant_tx: Tenant, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Topology]:
    if not Path(REDIS_SERVER).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{REDIS_SERVER} is missing; .ci/run installs redis-server")
        pytest.skip(
            f"{REDIS_SERVER} is missing: `apt-get install redis-server` (CI installs it)"
        )
    redis_port, port_a, port_b = free_port(), free_port(), free_port()
    env = server_env(
        var_dir=tmp_path,
        public_port=port_a,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        Q_WORKERS="2",
        # The dispatchers look for due touch points every second.
        TOUCHPOINT_INTERVAL_SECONDS="1",
    )
    with running_stack(env, tmp_path) as stack:
        start_redis(stack, redis_port)
        workers = [stack.worker("worker-1"), stack.worker("worker-2")]
        dispatchers = [
            stack.dispatcher("dispatcher-1"),
            stack.dispatcher("dispatcher-2"),
        ]
        web = {
            "A": (stack.web("web-A", port_a), port_a),
            "B": (stack.web("web-B", port_b), port_b),
        }
        for process, port in web.values():
            stack.wait_web(process, port)
        for worker in workers:
            stack.wait_worker(worker)
        pids = {d.pid for d in dispatchers}

        def both_dispatchers_tick() -> bool:
            with schema_context(get_public_schema_name()):
                seen = set(
                    ProcessHeartbeat.objects.filter(
                        kind=ProcessKind.DISPATCHER, pid__in=pids
                    ).values_list("pid", flat=True)
                )
            return seen == pids

        stack.wait_for(
            both_dispatchers_tick, what="both dispatchers tick", timeout=WAIT_SECONDS
        )
        yield Topology(stack, redis_port, web, workers, dispatchers)
        if _failed(request):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for process in stack.processes:
                shutil.copy(process.log, ARTIFACTS / f"scaleout-{process.name}.log")


def make_brand(api: ShopMonkeyAPI) -> CRMConnection:
    Tenant.objects.filter(slug="alpha").update(outbound_mode="live")
    MessagingPolicy.objects.get_or_create(singleton=True)
    LocationFactory(
        name="Tint World - Store094",
        crm_location_id=LOCATION_ID,
        time_zone=daytime_zone(datetime.now(UTC)),
    )
    cadence.cadence_default_ensure()
    return make_connection(base_url=api.base_url, poll_enabled=False)


def delivery(number: int) -> tuple[str, bytes, dict[str, str]]:
    """A signed new website quote; each customer has a phone and email of their own."""
    order_id = str(uuid.uuid4())
    event = sample_order_event(
        location_crm_id=LOCATION_ID,
        workflow_status_id=LEAD_COLUMN_ID,
        order_id=order_id,
    )
    customer = event["data"]["customer"]
    customer["phoneNumbers"][0]["number"] = f"+1555555{1000 + number:04d}"
    customer["emails"][0]["email"] = f"scaleout.{number}@example.com"
    body = encode(event)
    return order_id, body, sign_event(secret=WEBHOOK_SECRET, body=body)


def post(
    port: int, connection: CRMConnection, body: bytes, headers: dict[str, str]
) -> int:
    url = f"http://127.0.0.1:{port}/webhooks/shopmonkey/{connection.public_id}/"
    with httpx.Client(timeout=15, trust_env=False) as client:
        response = client.post(
            url, content=body, headers={**headers, "host": f"{HOST}:{port}"}
        )
        return response.status_code


def staff_reply_through(port: int, session_id: int, text: str) -> str:
    """Log in to the admin of web process ``port`` and answer the conversation;
    returns the admin's message after the redirect."""
    origin = f"http://127.0.0.1:{port}"
    with httpx.Client(
        base_url=origin,
        headers={"host": f"{HOST}:{port}"},
        timeout=15,
        trust_env=False,
    ) as client:
        client.get("/admin/login/").raise_for_status()
        login = client.post(
            "/admin/login/?next=/admin/",
            data={
                "username": "sam",
                "password": STAFF_PASSWORD,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
                "next": "/admin/",
            },
        )
        assert login.status_code == 302, login.text[:2000]
        change = client.get(f"/admin/chat/chatsession/{session_id}/change/")
        change.raise_for_status()
        reply = client.post(
            f"/admin/chat/chatsession/{session_id}/reply/",
            data={"text": text, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
            follow_redirects=True,
        )
        reply.raise_for_status()
        found = re.search(r'<ul class="messagelist">(.*?)</ul>', reply.text, re.S)
        return re.sub(r"<[^>]+>", " ", found.group(1)).strip() if found else ""


async def staff_reply_reaches_socket(
    ws_port: int, token: str, admin_port: int, session_id: int, text: str
) -> dict[str, Any]:
    """A customer socket on one process; the staff reply through the other."""
    ws = _ws_client()
    socket = await ws.connect(
        "127.0.0.1",
        ws_port,
        f"/ws/chat/{token}/",
        host=f"{HOST}:{ws_port}",
        origin=f"http://{HOST}:{ws_port}",
    )
    try:
        async with asyncio.timeout(15):
            _, first = await socket.receive()
        assert first is not None
        assert json.loads(first)["type"] == "history"
        flash = await asyncio.to_thread(
            staff_reply_through, admin_port, session_id, text
        )
        assert "Reply sent." in flash, flash
        events = []
        async with asyncio.timeout(15):
            while True:
                _, raw = await socket.receive()
                assert raw is not None, f"the socket closed; got {events}"
                event = json.loads(raw)
                events.append(event)
                if event["type"] == "message" and event["message"].get("text") == text:
                    return {"events": events, "message": event["message"]}
    finally:
        await socket.close()


def test_two_of_each_process_share_redis_and_nothing_is_sent_twice(
    api: ShopMonkeyAPI, topology: Topology
) -> None:
    stack = topology.stack
    connection = make_brand(api)
    (_, port_a), (_, port_b) = topology.web["A"], topology.web["B"]

    # --- (a) webhooks alternately to A and B, some delivered twice ---------------------
    deliveries = [delivery(number) for number in range(LEADS)]
    sends = [
        ((port_a, port_b)[index % 2], body, headers)
        for index, (_, body, headers) in enumerate(deliveries)
    ]
    # ShopMonkey's retries: the same delivery again, to the other process.
    sends += [
        ((port_b, port_a)[index % 2], body, headers)
        for index, (_, body, headers) in enumerate(deliveries[:REDELIVERED])
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda s: post(s[0], connection, *s[1:]), sends))
    assert statuses[:LEADS] == [202] * LEADS, statuses
    assert all(status in {200, 202} for status in statuses[LEADS:]), statuses
    order_ids = {order_id for order_id, _, _ in deliveries}
    for name, (process, _) in topology.web.items():
        received = process.text().count("POST /webhooks/shopmonkey/")
        assert received == (LEADS + REDELIVERED) // 2, (name, received)

    stack.wait_for(
        lambda: (
            Lead.objects.count() >= LEADS and CadenceEnrollment.objects.count() >= LEADS
        ),
        what=f"{LEADS} leads enrolled",
        timeout=WAIT_SECONDS,
    )
    assert set(Lead.objects.values_list("crm_order_id", flat=True)) == order_ids
    assert Lead.objects.count() == LEADS
    assert (
        WebhookDelivery.objects.filter(record_id__in=order_ids)
        .values("record_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count()
        == 0
    )

    # --- (b) touch points: the first two at once, then two more made due -------------
    first_steps = TouchPoint.objects.filter(step__position__in=(1, 2))

    def first_steps_done() -> bool:
        return first_steps.filter(status=TouchPointStatus.RECORDED).count() == 2 * LEADS

    stack.wait_for(
        first_steps_done, what="every lead's first SMS and email", timeout=WAIT_SECONDS
    )
    speed_to_lead = time.monotonic() - started
    TouchPoint.objects.filter(step__position__in=LATER_STEPS).update(
        due_at=timezone.now()
    )
    processed = TouchPoint.objects.filter(step__position__in=(1, 2, *LATER_STEPS))
    stack.wait_for(
        lambda: processed.filter(status=TouchPointStatus.RECORDED).count() == 4 * LEADS,
        what="the later steps processed by the dispatchers' tasks",
        timeout=WAIT_SECONDS,
    )
    settled = OutboundMessage.objects.count()

    # --- (c) a staff reply through B reaches the customer's socket on A ---------------
    lead = Lead.objects.order_by("pk").first()
    token = chat_services.chat_links_create(leads=[lead])[lead.pk].rsplit("/", 1)[1]
    session = chat_services.session_for_lead(lead=lead)
    # The servers do not know the test settings' MD5 hasher; both read cheap PBKDF2.
    staff = SuperUserFactory(username="sam", first_name="Sam")
    staff.password = PBKDF2PasswordHasher().encode(
        STAFF_PASSWORD, "scaleouttests", iterations=1000
    )
    staff.save(update_fields=["password"])
    text = f"Sam here from B ({uuid.uuid4().hex[:8]})"
    pushed_at = time.monotonic()
    live = asyncio.run(
        staff_reply_reaches_socket(port_a, token, port_b, session.pk, text)
    )
    push_seconds = time.monotonic() - pushed_at
    assert live["message"]["role"] == MessageRole.STAFF
    assert {"type": "mode", "mode": "human"} in live["events"]
    assert (
        ChatMessage.objects.filter(session=session, role=MessageRole.STAFF).count() == 1
    )
    assert ChatSession.objects.get(pk=session.pk).mode == "human"

    # --- (d) nothing sent twice -----------------------------------------------------------
    per_kind = (
        OutboundMessage.objects.values("lead", "kind", "channel")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {(r["lead"], r["kind"], r["channel"]): r["n"] for r in per_kind}
    leads = set(Lead.objects.values_list("pk", flat=True))
    assert counts == {
        (lead_id, MessageKind.CADENCE, channel): 2
        for lead_id in leads
        for channel in ("sms", "email")
    }
    assert OutboundMessage.objects.count() == settled == 4 * LEADS
    # Every message belongs to exactly one touch point, and every processed touch point has one.
    linked = list(
        processed.exclude(outbound_message=None).values_list(
            "outbound_message", flat=True
        )
    )
    assert len(linked) == 4 * LEADS
    assert set(linked) == set(OutboundMessage.objects.values_list("pk", flat=True))
    assert (
        TouchPoint.objects.exclude(step__position__in=(1, 2, *LATER_STEPS))
        .exclude(status=TouchPointStatus.SCHEDULED)
        .count()
        == 0
    )

    # --- the work was shared, through Redis ---------------------------------------------
    assert not OrmQ.objects.exists()  # the database queue stayed empty
    tasks_per_worker = {
        worker.name: worker.text().count("Processed '") for worker in topology.workers
    }
    assert all(tasks_per_worker.values()), tasks_per_worker
    for process in stack.processes:
        assert process.running(), stack.report()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "scaleout-figures.json").write_text(
        json.dumps(
            {
                "deliveries_posted": len(sends),
                "deliveries_answered_2xx": sum(200 <= s < 300 for s in statuses),
                "orders": len(order_ids),
                "leads": Lead.objects.count(),
                "duplicate_leads": Lead.objects.count()
                - len(set(Lead.objects.values_list("crm_order_id", flat=True))),
                "touch_points_processed": processed.count(),
                "messages": OutboundMessage.objects.count(),
                "webhooks_posted_to_first_touches_recorded_s": round(speed_to_lead, 3),
                "cross_process_staff_reply_s": round(push_seconds, 3),
                "tasks_per_worker": tasks_per_worker,
                "tasks_queued_per_dispatcher": {
                    d.name: d.text().count("Enqueued [") for d in topology.dispatchers
                },
                "at": timezone.now().isoformat(),
            }
        )
    )
