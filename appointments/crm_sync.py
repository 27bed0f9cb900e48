"""Keeping ShopMonkey's calendar in step with ours: create, move or cancel, with retries.

A sync failure never touches the local booking: the appointment stays as booked,
its sync state says what went wrong, and the dispatcher tries again with a
backoff that doubles from a minute, up to CRM_SYNC_MAX_ATTEMPTS.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from appointments.models import Appointment, AppointmentStatus, CrmSyncStatus
from leadorch.tasks import enqueue_on_commit
from leads.intake import connection_client
from leads.shopmonkey import ShopMonkeyError, appointment_body

logger = logging.getLogger(__name__)

# How long a worker may hold an appointment's sync before another may take it.
SYNC_LEASE = timedelta(minutes=5)


def appointment_crm_sync(*, appointment_id: int) -> str:
    """Bring the CRM's copy of one appointment in line with ours. Safe to run twice.

    The appointment is claimed (``syncing``, with a lease) by a conditional update,
    so two workers never push it at once; the call itself runs outside any
    transaction. A sync that changed the booking meanwhile is pushed again.
    """
    now = timezone.now()
    claimable = Q(
        crm_sync_status__in=[CrmSyncStatus.PENDING, CrmSyncStatus.FAILED]
    ) | Q(crm_sync_status=CrmSyncStatus.SYNCING, crm_next_attempt_at__lt=now)
    claimed = Appointment.objects.filter(claimable, pk=appointment_id).update(
        crm_sync_status=CrmSyncStatus.SYNCING, crm_next_attempt_at=now + SYNC_LEASE
    )
    if not claimed:
        return "nothing to do"
    appointment = Appointment.objects.select_related(
        "lead__crm_connection", "location", "service"
    ).get(pk=appointment_id)
    version = appointment.updated_at
    connection = appointment.lead.crm_connection
    if connection is None or not connection.is_active or not connection.api_key:
        _settle(appointment, CrmSyncStatus.NOT_CONFIGURED, version)
        return "no CRM connection"
    try:
        action = _push(appointment, connection)
    except ShopMonkeyError as error:
        return _failed(appointment, error)
    _settle(appointment, CrmSyncStatus.SYNCED, version)
    return action


def _settle(appointment: Appointment, status: str, version: object) -> None:
    """Record the outcome, unless the booking changed while we pushed: then it goes round again."""
    changed_meanwhile = not Appointment.objects.filter(
        pk=appointment.pk, updated_at=version
    ).update(
        crm_appointment_id=appointment.crm_appointment_id,
        crm_sync_status=status,
        crm_sync_error="",
        crm_synced_at=timezone.now(),
        crm_next_attempt_at=None,
    )
    if changed_meanwhile:
        Appointment.objects.filter(pk=appointment.pk).update(
            crm_appointment_id=appointment.crm_appointment_id,
            crm_sync_status=CrmSyncStatus.PENDING,
            crm_next_attempt_at=timezone.now(),
        )


def _push(appointment: Appointment, connection: object) -> str:
    lead = appointment.lead
    with connection_client(connection, max_attempts=2) as client:
        if appointment.status in (AppointmentStatus.CANCELLED,):
            if appointment.crm_appointment_id:
                client.delete_appointment(appointment.crm_appointment_id)
                return "deleted"
            return "nothing to cancel"
        if appointment.status != AppointmentStatus.BOOKED:
            return "kept (completed or no-show)"
        body = appointment_body(
            customer_id=lead.crm_customer_id,
            vehicle_id=lead.crm_vehicle_id,
            order_id=lead.crm_order_id,
            location_id=appointment.location.crm_location_id,
            name=f"{appointment.service.name} - {lead.full_name or lead.email or lead.phone}",
            starts_at=appointment.starts_at,
            ends_at=appointment.ends_at,
            note=f"Booked through Lead Orchestrator ({appointment.get_source_display()}). {appointment.notes}".strip(),
        )
        if appointment.crm_appointment_id:
            client.update_appointment(appointment.crm_appointment_id, body)
            return "updated"
        appointment.crm_appointment_id = client.create_appointment(body)
        return "created"


def _failed(appointment: Appointment, error: ShopMonkeyError) -> str:
    attempts = appointment.crm_sync_attempts + 1
    gave_up = attempts >= settings.CRM_SYNC_MAX_ATTEMPTS
    Appointment.objects.filter(pk=appointment.pk).update(
        crm_appointment_id=appointment.crm_appointment_id,
        crm_sync_attempts=attempts,
        crm_sync_error=str(error)[:2000],
        crm_sync_status=CrmSyncStatus.GAVE_UP if gave_up else CrmSyncStatus.FAILED,
        crm_next_attempt_at=None
        if gave_up
        else timezone.now() + timedelta(minutes=2 ** (attempts - 1)),
    )
    logger.warning(
        "CRM sync of appointment %s failed (attempt %s): %s",
        appointment.pk,
        attempts,
        error,
    )
    return f"failed: {error}"


def appointments_due_for_sync(*, limit: int = 100) -> list[int]:
    """Appointments waiting for their first push, due a retry, or whose push lease ran out."""
    return list(
        Appointment.objects.filter(
            crm_sync_status__in=[
                CrmSyncStatus.PENDING,
                CrmSyncStatus.FAILED,
                CrmSyncStatus.SYNCING,
            ],
            crm_next_attempt_at__lte=timezone.now(),
        ).values_list("pk", flat=True)[:limit]
    )


def appointment_crm_sync_retry(*, appointment: Appointment) -> None:
    """Staff's "retry": start the sync afresh (attempts reset) and queue it after commit."""
    Appointment.objects.filter(pk=appointment.pk).update(
        crm_sync_status=CrmSyncStatus.PENDING,
        crm_sync_attempts=0,
        crm_next_attempt_at=timezone.now(),
    )
    enqueue_on_commit(
        "appointments.tasks.appointment_crm_sync", appointment_id=appointment.pk
    )
