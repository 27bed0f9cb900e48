"""No N+1 in the brand admin: each changelist runs as many queries for many rows as few.

The admins are read from the brand admin site's registry, so a new admin is
tested as soon as it is registered -- and fails here until it gets a builder
below (a function that creates ``n`` rows of its model, each with its own
related rows, so that a per-row query shows up as growth).
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task
from django_q.signing import SignedPackage

from appointments.models import Appointment, ScheduledMessage
from chat.models import ChatSession
from leads.models import CRMConnection, IgnoredOrder, JobExecution, WebhookDelivery
from messaging import services as messaging_services
from messaging.models import (
    InboundMessage,
    OptOut,
    OutboundMessage,
    OutboundModeChange,
    WhitelistEntry,
)
from tests.factories import (
    ClosureFactory,
    LeadFactory,
    LocationFactory,
    ServiceCatalogItemFactory,
    ServiceOverrideFactory,
    StaffMembershipFactory,
    SuperUserFactory,
    UserFactory,
)
from touchpoints.models import Cadence, CadenceEnrollment, CadenceStep, TouchPoint

FEW, MANY = 2, 12

_sequence = itertools.count(1)


def _n() -> int:
    return next(_sequence)


def _times(make: Callable[[], Any]) -> Callable[[int], None]:
    def build(n: int) -> None:
        for _ in range(n):
            make()

    return build


# --- one row of each model, with its own related rows ---------------------------------


def _group() -> None:
    group = Group.objects.create(name=f"Group {_n()}")
    group.permissions.set(Permission.objects.order_by("pk")[:3])


def _task(*, success: bool) -> Task:
    now = timezone.now()
    return Task.objects.create(
        id=uuid.uuid4().hex,
        name=f"task-{_n()}",
        func="math.floor",
        group="nightly",
        cluster="leadorch",
        started=now - timedelta(seconds=3),
        stopped=now,
        success=success,
        result="ok" if success else "Traceback: boom",
    )


def _schedule() -> None:
    Schedule.objects.create(
        name=f"schedule-{_n()}",
        func="math.floor",
        schedule_type=Schedule.HOURLY,
        next_run=timezone.now(),
        task=_task(success=True).id,
    )


def _queued() -> None:
    number = _n()
    OrmQ.objects.create(
        key="leadorch",
        payload=SignedPackage.dumps(
            {
                "id": uuid.uuid4().hex,
                "name": f"queued-{number}",
                "func": "math.floor",
                "group": "nightly",
                "args": (number,),
                "kwargs": {},
            }
        ),
        lock=timezone.now(),
    )


def _connection() -> CRMConnection:
    return CRMConnection.objects.create(name=f"ShopMonkey {_n()}", api_key="sk-test")


def _ignored_order() -> None:
    number = _n()
    IgnoredOrder.objects.create(
        connection=_connection(),
        crm_order_id=f"order-{number}",
        crm_order_number=str(number),
        reason="no_contact",
    )


def _delivery() -> None:
    number = _n()
    WebhookDelivery.objects.create(
        connection=_connection(),
        table="order",
        operation="INSERT",
        record_id=f"record-{number}",
        record_version=str(number),
        body="{}",
    )


def _job() -> None:
    JobExecution.objects.create(connection=_connection(), kind="poll")


def _outbound() -> None:
    lead = LeadFactory()
    OutboundMessage.objects.create(
        lead=lead,
        location=lead.location,
        channel="sms",
        kind="cadence",
        to=lead.phone,
        body="Hi",
        status="sent",
        sent_by=UserFactory(),
    )


def _inbound() -> None:
    lead = LeadFactory()
    InboundMessage.objects.create(
        provider_message_id=f"SM{_n()}",
        from_number=lead.phone,
        body="Yes please",
        kind="reply",
        lead=lead,
    )


def _opt_out() -> None:
    OptOut.objects.create(
        channel="sms", address=f"+1619555{_n():04d}", source="sms_keyword"
    )


def _mode_change() -> None:
    OutboundModeChange.objects.create(
        from_mode="disabled", to_mode="whitelist", actor=UserFactory()
    )


def _policy(n: int) -> None:
    # One row per brand (the changelist redirects to it): nothing grows.
    messaging_services.policy_get()


def _cadence() -> Cadence:
    return Cadence.objects.create(name=f"Cadence {_n()}")


def _step(cadence: Cadence | None = None, position: int = 1) -> CadenceStep:
    return CadenceStep.objects.create(
        cadence=cadence or _cadence(),
        position=position,
        channel="sms",
        delay_minutes=10 * position,
        template="Hi {{ first_name }}",
    )


def _cadence_with_steps() -> None:
    cadence = _cadence()
    _step(cadence, 1)
    _step(cadence, 2)


def _enrollment() -> None:
    CadenceEnrollment.objects.create(
        lead=LeadFactory(), cadence=_cadence(), started_at=timezone.now()
    )


def _touchpoint() -> None:
    step = _step()
    TouchPoint.objects.create(
        lead=LeadFactory(),
        step=step,
        channel=step.channel,
        due_at=timezone.now(),
        outbound_message=None,
    )


def _chat_session() -> None:
    ChatSession.objects.create(
        lead=LeadFactory(),
        mode="human",
        waiting_since=timezone.now(),
        last_message_at=timezone.now(),
    )


def _appointment() -> Appointment:
    lead = LeadFactory()
    starts = timezone.now() + timedelta(days=_n())
    return Appointment.objects.create(
        lead=lead,
        location=lead.location,
        service=ServiceCatalogItemFactory(),
        bay=1,
        starts_at=starts,
        ends_at=starts + timedelta(hours=2),
        source="staff",
        price_cents=29900,
        booked_by=UserFactory(),
    )


def _scheduled_message() -> None:
    appointment = _appointment()
    ScheduledMessage.objects.create(
        lead=appointment.lead,
        appointment=appointment,
        kind="reminder",
        channel="sms",
        due_at=appointment.starts_at - timedelta(days=1),
    )


BUILDERS: dict[str, Callable[[int], None]] = {
    "auth.User": _times(UserFactory),
    "auth.Group": _times(_group),
    "django_q.Schedule": _times(_schedule),
    "django_q.Success": _times(lambda: _task(success=True)),
    "django_q.Failure": _times(lambda: _task(success=False)),
    "django_q.OrmQ": _times(_queued),
    "locations.Location": _times(LocationFactory),
    "locations.Closure": _times(ClosureFactory),
    "locations.ServiceCatalogItem": _times(ServiceCatalogItemFactory),
    "locations.ServiceOverride": _times(ServiceOverrideFactory),
    "locations.StaffMembership": _times(StaffMembershipFactory),
    "leads.Lead": _times(LeadFactory),
    "leads.CRMConnection": _times(_connection),
    "leads.IgnoredOrder": _times(_ignored_order),
    "leads.WebhookDelivery": _times(_delivery),
    "leads.JobExecution": _times(_job),
    "messaging.OutboundMessage": _times(_outbound),
    "messaging.InboundMessage": _times(_inbound),
    "messaging.OptOut": _times(_opt_out),
    "messaging.WhitelistEntry": _times(
        lambda: WhitelistEntry.objects.create(email=f"friend{_n()}@example.com")
    ),
    "messaging.MessagingPolicy": _policy,
    "messaging.OutboundModeChange": _times(_mode_change),
    "touchpoints.Cadence": _times(_cadence_with_steps),
    "touchpoints.CadenceStep": _times(_step),
    "touchpoints.CadenceEnrollment": _times(_enrollment),
    "touchpoints.TouchPoint": _times(_touchpoint),
    "chat.ChatSession": _times(_chat_session),
    "appointments.Appointment": _times(_appointment),
    "appointments.ScheduledMessage": _times(_scheduled_message),
}
# Changelists that are not lists: one row per brand, the page redirects to it.
SINGLETONS = {"messaging.MessagingPolicy"}

REGISTERED = sorted(model._meta.label for model in admin.site._registry)


def test_every_registered_admin_has_a_builder():
    missing = [label for label in REGISTERED if label not in BUILDERS]

    assert not missing, (
        "Registered admins without a row builder in tests/test_admin_query_counts.py "
        f"(add one so their changelist is checked for N+1 queries): {missing}"
    )


def _shape(sql: str) -> str:
    return re.sub(r"\b\d+\b|'[^']*'", "?", sql)


def _repeated(queries: list[dict[str, str]]) -> str:
    counts = Counter(_shape(query["sql"]) for query in queries)
    return "\n".join(
        f"{count}x {sql[:400]}" for sql, count in counts.most_common() if count > 1
    )


@pytest.mark.parametrize("label", REGISTERED)
def test_changelist_query_count_does_not_grow_with_rows(label, tenant, tenant_client):
    build = BUILDERS.get(label)
    if build is None:
        pytest.fail(f"No row builder for the {label} admin; add one to BUILDERS.")
    model = next(m for m in admin.site._registry if m._meta.label == label)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    tenant_client.force_login(SuperUserFactory())
    expected_status = 302 if label in SINGLETONS else 200

    def render() -> tuple[int, CaptureQueriesContext]:
        with CaptureQueriesContext(connection) as queries:
            response = tenant_client.get(url)
        assert response.status_code == expected_status, response.content[:500]
        cl = (response.context or {}).get("cl")
        return (cl.result_count if cl is not None else -1), queries

    build(FEW)
    render()  # warm-up: caches (content types, permissions) are filled once
    few_rows, few = render()
    build(MANY - FEW)
    many_rows, many = render()

    if label not in SINGLETONS:
        assert many_rows == few_rows + MANY - FEW, "the builder made no listed rows"
    assert len(many) == len(few), (
        f"{label} changelist: {len(few)} queries for {few_rows} rows, "
        f"{len(many)} for {many_rows} rows. Repeated queries:\n"
        + _repeated(many.captured_queries)
    )
