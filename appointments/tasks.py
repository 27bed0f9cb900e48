"""Queued work of appointments. Each task names its brand's schema and runs inside it."""

from __future__ import annotations

from django.utils import timezone
from django_q.tasks import async_task
from django_tenants.utils import schema_context

from appointments import crm_sync, notifications
from appointments.models import Appointment, ScheduledMessage, ScheduledStatus
from tenants.selectors import tenant_list_active


def appointment_confirmation_send(
    *, schema_name: str, appointment_id: int, event: str
) -> str:
    with schema_context(schema_name):
        appointment = (
            Appointment.objects.select_related("lead__location", "location", "service")
            .filter(pk=appointment_id)
            .first()
        )
        if appointment is None:
            return "appointment gone"
        messages = notifications.confirmation_send(appointment=appointment, event=event)
        return ", ".join(f"{m.channel}: {m.status}" for m in messages)


def appointment_crm_sync(*, schema_name: str, appointment_id: int) -> str:
    with schema_context(schema_name):
        return crm_sync.appointment_crm_sync(appointment_id=appointment_id)


def scheduled_messages_send(*, schema_name: str) -> str:
    with schema_context(schema_name):
        return (
            f"{notifications.scheduled_send_due(now=timezone.now())} sent or recorded"
        )


def appointments_dispatch() -> None:
    """Dispatcher job: queue due reminders and rebooking messages, and CRM syncs that are due."""
    now = timezone.now()
    for tenant in tenant_list_active():
        with schema_context(tenant.schema_name):
            if ScheduledMessage.objects.filter(
                status=ScheduledStatus.SCHEDULED, due_at__lte=now
            ).exists():
                async_task(
                    "appointments.tasks.scheduled_messages_send",
                    schema_name=tenant.schema_name,
                )
            for appointment_id in crm_sync.appointments_due_for_sync():
                async_task(
                    "appointments.tasks.appointment_crm_sync",
                    schema_name=tenant.schema_name,
                    appointment_id=appointment_id,
                )
