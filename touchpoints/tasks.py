"""Queued work of the follow-up cadence. Each task names its brand's schema and runs inside it."""

from __future__ import annotations

from django_q.tasks import async_task
from django_tenants.utils import schema_context

from leads.models import Lead
from tenants.selectors import tenant_list_active
from touchpoints import processor, services


def cadence_start_for_lead(*, schema_name: str, lead_id: int) -> str:
    """LEAD_INTAKE_HANDLERS: a new lead starts the default cadence; its first touches go out at once."""
    with schema_context(schema_name):
        lead = Lead.objects.select_related("location").filter(pk=lead_id).first()
        if lead is None:
            return "lead gone"
        enrollment = services.cadence_start(lead=lead)
        if enrollment is None:
            return "lead closed"
        stats = processor.touchpoints_process_due(lead_id=lead_id)
        return f"started; {stats.sent} sent, {stats.blocked} blocked, {stats.deferred} deferred"


def touchpoints_process_lead(*, schema_name: str, lead_id: int) -> str:
    with schema_context(schema_name):
        stats = processor.touchpoints_process_due(lead_id=lead_id)
        return f"{stats.claimed} claimed, {stats.sent} sent, {stats.blocked} blocked"


def touchpoints_process_due(*, schema_name: str) -> str:
    with schema_context(schema_name):
        stats = processor.touchpoints_process_due()
        return f"{stats.claimed} claimed, {stats.sent} sent, {stats.blocked} blocked, {stats.deferred} deferred"


def touchpoints_dispatch() -> None:
    """Dispatcher job: queue processing for every brand with due touch points; flag rows a crash left."""
    for tenant in tenant_list_active():
        with schema_context(tenant.schema_name):
            processor.touchpoints_recover_stuck()
            if processor.touchpoints_due_exist():
                async_task(
                    "touchpoints.tasks.touchpoints_process_due",
                    schema_name=tenant.schema_name,
                    group="touchpoints",
                )
