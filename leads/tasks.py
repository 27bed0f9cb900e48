"""Queued work of lead intake. Each task names its brand's schema and runs inside it."""

from __future__ import annotations

from django_q.tasks import async_task
from django_tenants.utils import schema_context

from leads import intake, webhooks
from leads.models import CRMConnection
from tenants.selectors import tenant_list_active


def webhook_delivery_process(*, schema_name: str, delivery_id: int) -> str:
    with schema_context(schema_name):
        return webhooks.webhook_delivery_process(delivery_id=delivery_id)


def connection_poll(*, schema_name: str, connection_id: int) -> str:
    with schema_context(schema_name):
        connection = CRMConnection.objects.filter(
            pk=connection_id, is_active=True
        ).first()
        if connection is None:
            return "connection gone or inactive"
        job = intake.connection_poll(connection=connection)
        if job is None:
            return "another poll is running"
        return f"{job.get_status_display()}: {job.orders_seen} orders, {job.leads_created} leads, {job.errors} errors"


def connections_poll_enqueue() -> None:
    """Dispatcher job: queue a poll for every brand's connections that are due one."""
    for tenant in tenant_list_active():
        with schema_context(tenant.schema_name):
            for connection_id in intake.connections_due_for_poll():
                async_task(
                    "leads.tasks.connection_poll",
                    schema_name=tenant.schema_name,
                    connection_id=connection_id,
                    group="crm-poll",
                )


def deliveries_retry_enqueue() -> None:
    """Dispatcher job: queue again the deliveries a crash or an API failure left unprocessed."""
    for tenant in tenant_list_active():
        with schema_context(tenant.schema_name):
            for delivery_id in webhooks.deliveries_needing_retry():
                async_task(
                    "leads.tasks.webhook_delivery_process",
                    schema_name=tenant.schema_name,
                    delivery_id=delivery_id,
                )
