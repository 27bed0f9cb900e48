"""From a signed ShopMonkey webhook to a booking in ShopMonkey, through real processes.

daphne, the worker (run_worker, two processes) and the dispatcher run as
subprocesses on the test database; ShopMonkey's API is a recording server on
loopback; the customer is Debian's Chromium. The brand is live with the outbox
backend, so every SMS and email is recorded, not sent:

signed webhook → lead → first SMS and email recorded (speed to lead) → the SMS's
chat link in Chromium → a price from the catalog → a booked slot → confirmation
recorded → the booking created in ShopMonkey (``POST /v3/appointment``) → synced.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from datetime import time as clock
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from appointments.models import Appointment, AppointmentStatus, CrmSyncStatus
from chat.models import ChatMessage, MessageRole
from leads.models import CRMConnection, Lead, LeadStatus, WebhookDelivery
from leads.sample_orders import encode, sample_order_event, sign_event
from leads.shopmonkey import format_datetime
from locations.models import Location, LocationHours
from messaging.models import MessageKind, MessagingPolicy, OutboundMessage
from tenants.models import Tenant
from tests.browser.conftest import ARTIFACTS, _failed
from tests.e2e.shopmonkey_api import ShopMonkeyAPI, shopmonkey_api
from tests.e2e.stack import (
    Stack,
    collectstatic,
    daytime_zone,
    free_port,
    running_stack,
    server_env,
)
from tests.factories import LocationFactory, ServiceCatalogItemFactory
from tests.leads.conftest import make_connection
from tests.leads.shopmonkey_fakes import LEAD_COLUMN_ID, LOCATION_ID, WEBHOOK_SECRET
from touchpoints import services as cadence
from touchpoints.models import CadenceEnrollment, EnrollmentStatus

pytestmark = pytest.mark.browser

HOST = "alpha.localhost"
PRICE = "$399.00"
# The target is p95 <= 1.5 s under load (bench/speed_to_lead.py); one lead on
# a shared CI machine gets room for a slow moment.
SPEED_TO_LEAD_LIMIT_SECONDS = 5.0
WAIT_SECONDS = 30
CHAT_LINK = re.compile(r"https?://[^\s/]+/c/[A-Za-z0-9_\-]+")


def make_brand(api: ShopMonkeyAPI) -> tuple[CRMConnection, Location]:
    """Brand alpha, live: a store mapped to ShopMonkey's location, open every day
    08:00-18:00, selling ceramic tint, and a connection to the mock API."""
    Tenant.objects.filter(slug="alpha").update(outbound_mode="live")
    MessagingPolicy.objects.get_or_create(singleton=True)
    store = LocationFactory(
        name="Tint World - Store094",
        crm_location_id=LOCATION_ID,
        time_zone=daytime_zone(datetime.now(UTC)),
    )
    for weekday in range(7):
        LocationHours.objects.create(
            location=store, weekday=weekday, opens_at=clock(8), closes_at=clock(18)
        )
    ServiceCatalogItemFactory(
        code="ceramic-tint",
        name="Ceramic tint",
        category="Window tint",
        price_cents=39900,
        duration_minutes=120,
    )
    cadence.cadence_default_ensure()
    return make_connection(base_url=api.base_url, poll_enabled=False), store


@pytest.fixture
def api() -> Iterator[ShopMonkeyAPI]:
    with shopmonkey_api() as mock:
        yield mock


@pytest.fixture
def stack(
    tenant_tx: Tenant, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Stack, int]]:
    """daphne, run_worker (Q_WORKERS=2) and the dispatcher; stopped before the test
    database is cleaned. A failed test leaves their logs in tests/artifacts/."""
    port = free_port()
    env = server_env(var_dir=tmp_path, public_port=port, Q_WORKERS="2")
    with running_stack(env, tmp_path) as processes:
        worker = processes.worker("worker")
        processes.dispatcher("dispatcher")
        collectstatic(env)  # while they start; before daphne, whose whitenoise
        web = processes.web("daphne", port)  # indexes the files when it starts
        processes.wait_web(web, port)
        processes.wait_worker(worker)
        yield processes, port
        if _failed(request):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for process in processes.processes:
                shutil.copy(process.log, ARTIFACTS / f"e2e-{process.name}.log")


def post_webhook(port: int, connection: CRMConnection, order_id: str) -> int:
    body = encode(
        sample_order_event(
            location_crm_id=LOCATION_ID,
            workflow_status_id=LEAD_COLUMN_ID,
            order_id=order_id,
        )
    )
    headers = {**sign_event(secret=WEBHOOK_SECRET, body=body), "host": f"{HOST}:{port}"}
    url = f"http://127.0.0.1:{port}/webhooks/shopmonkey/{connection.public_id}/"
    with httpx.Client(timeout=10, trust_env=False) as client:
        return client.post(url, content=body, headers=headers).status_code


def recorded(lead_filter: dict[str, Any], kind: str) -> dict[str, OutboundMessage]:
    """The lead's recorded messages of ``kind``, by channel."""
    return {
        message.channel: message
        for message in OutboundMessage.objects.filter(
            kind=kind, status="recorded", **lead_filter
        ).order_by("pk")
    }


def send(page: Any, text: str) -> None:
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")


def offered_start(lead: Lead, slot_id: str) -> datetime:
    offers = [
        message.data["slots"]
        for message in ChatMessage.objects.filter(
            session__lead=lead, role=MessageRole.ASSISTANT
        ).order_by("pk")
        if message.data.get("slots")
    ]
    return datetime.fromisoformat(
        next(s for s in offers[-1] if s["id"] == slot_id)["start"]
    )


def test_a_webhook_lead_is_contacted_chats_books_and_reaches_shopmonkey(
    api: ShopMonkeyAPI,
    stack: tuple[Stack, int],
    open_page: Any,
    guard: Any,
) -> None:
    processes, port = stack
    connection, store = make_brand(api)
    order_id = str(uuid.uuid4())

    # --- a signed webhook, then the first SMS and email ----------------------------------
    posted = time.monotonic()
    assert post_webhook(port, connection, order_id) == 202
    first = processes.wait_for(
        lambda: (
            (m := recorded({"lead__crm_order_id": order_id}, MessageKind.CADENCE))
            and {"sms", "email"} <= m.keys()
            and m
        ),
        what="the lead's first SMS and email recorded",
        timeout=WAIT_SECONDS,
        interval=0.02,
    )
    speed_to_lead = time.monotonic() - posted
    delivery = WebhookDelivery.objects.get(record_id=order_id)
    on_server = max(
        (m.created_at - delivery.received_at).total_seconds() for m in first.values()
    )
    figures = {
        "post_to_sms_and_email_recorded_s": round(speed_to_lead, 3),
        "received_to_last_recorded_on_server_s": round(on_server, 3),
        "limit_s": SPEED_TO_LEAD_LIMIT_SECONDS,
    }
    assert speed_to_lead <= SPEED_TO_LEAD_LIMIT_SECONDS, (speed_to_lead, on_server)

    lead = Lead.objects.select_related("location").get(crm_order_id=order_id)
    assert lead.location == store
    assert lead.crm_connection == connection
    assert first["sms"].to == lead.phone
    assert first["email"].to == lead.email
    assert {m.backend for m in first.values()} == {"outbox"}
    link = CHAT_LINK.search(first["sms"].body)
    assert link, first["sms"].body
    assert link.group(0).startswith(f"http://{HOST}:{port}/c/")
    assert CHAT_LINK.search(first["email"].body)

    # --- the customer opens the link, asks a price, books -----------------------------
    page = open_page()
    response = page.goto(link.group(0))
    assert response.status == 200
    expect(page.get_by_role("heading", name=f"Hi {lead.first_name}")).to_be_visible()
    expect(page.locator("#chat")).to_have_attribute("data-connection", "live")

    send(page, "How much is ceramic tint?")
    expect(page.locator(".msg-assistant[data-id]").last).to_contain_text(
        f"Ceramic tint is {PRICE}"
    )

    send(page, "Can I book ceramic tint tomorrow?")
    slot = page.locator(".slots button.slot:enabled").first
    expect(slot).to_be_visible()
    label, slot_id = slot.text_content(), slot.get_attribute("data-slot")
    slot.click()
    card = page.locator(".appt-booked")
    expect(card).to_be_visible()
    expect(card.locator(".appt-title")).to_have_text("You're booked")
    expect(card.locator(".appt-when")).to_have_text(label)
    expect(card.locator(".appt-price")).to_have_text(PRICE)

    appointment = Appointment.objects.get(lead=lead)
    assert appointment.status == AppointmentStatus.BOOKED
    assert appointment.starts_at == offered_start(lead, slot_id)
    assert appointment.location == store

    # --- confirmation recorded, booking pushed to ShopMonkey ---------------------------
    confirmation = processes.wait_for(
        lambda: (
            (m := recorded({"lead": lead}, MessageKind.CONFIRMATION))
            and {"sms", "email"} <= m.keys()
            and m
        ),
        what="the booking's confirmation SMS and email recorded",
        timeout=WAIT_SECONDS,
    )
    assert "Ceramic tint" in confirmation["sms"].body
    assert store.name in confirmation["sms"].body
    processes.wait_for(
        lambda: Appointment.objects.filter(
            pk=appointment.pk, crm_sync_status=CrmSyncStatus.SYNCED
        ).exists(),
        what="the appointment synced to ShopMonkey",
        timeout=WAIT_SECONDS,
    )
    created = api.calls("POST", "/v3/appointment")
    assert len(created) == 1, created
    call = created[0]
    appointment.refresh_from_db()
    assert call.headers["authorization"] == "Bearer sk-test"
    assert call.body["startDate"] == format_datetime(appointment.starts_at)
    assert call.body["endDate"] == format_datetime(appointment.ends_at)
    assert (appointment.ends_at - appointment.starts_at).total_seconds() == 2 * 3600
    assert call.body["locationId"] == LOCATION_ID
    assert call.body["orderId"] == order_id
    assert call.body["sendConfirmation"] is False
    assert call.body["sendReminder"] is False
    assert appointment.crm_appointment_id
    assert appointment.crm_sync_error == ""

    lead.refresh_from_db()
    assert lead.status == LeadStatus.APPOINTMENT_SET
    enrollment = CadenceEnrollment.objects.get(lead=lead)
    assert enrollment.status == EnrollmentStatus.STOPPED
    # One first touch per channel, one confirmation per channel: nothing twice.
    kinds = sorted(
        OutboundMessage.objects.filter(lead=lead).values_list("kind", "channel")
    )
    assert kinds == [
        ("cadence", "email"),
        ("cadence", "sms"),
        ("confirmation", "email"),
        ("confirmation", "sms"),
    ]
    assert guard.outside_requests == []
    assert guard.page_errors == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "e2e-figures.json").write_text(
        json.dumps(
            {
                **figures,
                "post_to_booking_synced_s": round(time.monotonic() - posted, 3),
                "webhook_deliveries": WebhookDelivery.objects.count(),
                "leads": Lead.objects.count(),
                "messages": dict(
                    Counter(
                        OutboundMessage.objects.filter(lead=lead).values_list(
                            "kind", flat=True
                        )
                    )
                ),
                "shopmonkey_appointments_created": len(created),
                "at": timezone.now().isoformat(),
            }
        )
    )
