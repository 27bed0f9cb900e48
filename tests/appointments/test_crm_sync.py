"""Bookings reach ShopMonkey (create, move, cancel); a failing CRM never touches the local booking."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import respx
import time_machine

from appointments import crm_sync, services
from appointments.models import AppointmentStatus, CrmSyncStatus
from tests.appointments.conftest import NOW, TUESDAY_10
from tests.factories import LeadFactory
from tests.leads.conftest import make_connection
from tests.leads.shopmonkey_fakes import fixture

API = "https://shopmonkey.test"


def _lead(store):
    connection = make_connection()
    return LeadFactory(
        location=store,
        crm_connection=connection,
        crm_customer_id="cust-1",
        crm_vehicle_id="veh-1",
        crm_order_id="ord-1",
    )


def test_booking_creates_moving_updates_cancelling_deletes(
    live, store, tint, django_capture_on_commit_callbacks
):
    lead = _lead(store)
    with respx.mock(assert_all_called=False) as api:
        created = api.post(f"{API}/v3/appointment").mock(
            return_value=httpx.Response(200, json=fixture("appointment_created.json"))
        )
        updated = api.put(url__regex=rf"{API}/v3/appointment/.+").mock(
            return_value=httpx.Response(200, json={"success": True, "data": {}})
        )
        deleted = api.delete(url__regex=rf"{API}/v3/appointment/.+").mock(
            return_value=httpx.Response(200, json={"success": True, "data": {}})
        )

        with (
            time_machine.travel(NOW, tick=False),
            django_capture_on_commit_callbacks(execute=True),
        ):
            appointment = services.appointment_book(
                lead=lead, service=tint, starts_at=TUESDAY_10, source="chat"
            )
        appointment.refresh_from_db()
        assert (appointment.crm_sync_status, appointment.crm_appointment_id) == (
            CrmSyncStatus.SYNCED,
            fixture("appointment_created.json")["data"]["id"],
        )
        body = json.loads(created.calls[0].request.content)
        assert body["customerId"] == "cust-1"
        assert body["vehicleId"] == "veh-1"
        assert body["orderId"] == "ord-1"
        assert body["locationId"] == "loc-94"
        assert body["startDate"] == "2026-11-17T18:00:00.000Z"
        assert body["endDate"] == "2026-11-17T20:00:00.000Z"
        # ShopMonkey's own messages stay off: we send ours
        assert (
            body["sendConfirmation"],
            body["sendReminder"],
            body["useSMS"],
            body["useEmail"],
        ) == (False, False, False, False)

        with (
            time_machine.travel(NOW, tick=False),
            django_capture_on_commit_callbacks(execute=True),
        ):
            services.appointment_reschedule(
                appointment=appointment, starts_at=TUESDAY_10 + timedelta(days=1)
            )
        assert (
            json.loads(updated.calls[0].request.content)["startDate"]
            == "2026-11-18T18:00:00.000Z"
        )

        with django_capture_on_commit_callbacks(execute=True):
            services.appointment_cancel(appointment=appointment, reason="Sick")
        assert deleted.call_count == 1
        assert created.call_count == 1
    appointment.refresh_from_db()
    assert (appointment.status, appointment.crm_sync_status) == (
        AppointmentStatus.CANCELLED,
        CrmSyncStatus.SYNCED,
    )


def test_a_failing_crm_never_loses_the_booking_and_is_retried(
    live, store, tint, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr("leads.shopmonkey.time.sleep", lambda seconds: None)
    lead = _lead(store)
    with respx.mock(assert_all_called=False) as api:
        route = api.post(f"{API}/v3/appointment").mock(
            return_value=httpx.Response(
                503, json={"success": False, "message": "maintenance"}
            )
        )
        with (
            time_machine.travel(NOW, tick=False),
            django_capture_on_commit_callbacks(execute=True),
        ):
            appointment = services.appointment_book(
                lead=lead, service=tint, starts_at=TUESDAY_10, source="chat"
            )

        appointment.refresh_from_db()
        assert (
            appointment.status == AppointmentStatus.BOOKED
        )  # the local booking stands
        assert appointment.crm_sync_status == CrmSyncStatus.FAILED
        assert appointment.crm_sync_attempts == 1
        assert "HTTP 503: maintenance" in appointment.crm_sync_error
        assert appointment.crm_next_attempt_at is not None
        # not due yet; once due, the retry succeeds
        with time_machine.travel(NOW, tick=False):
            assert crm_sync.appointments_due_for_sync() == []
        route.mock(
            return_value=httpx.Response(200, json=fixture("appointment_created.json"))
        )
        with time_machine.travel(
            appointment.crm_next_attempt_at + timedelta(seconds=1), tick=False
        ):
            assert crm_sync.appointments_due_for_sync() == [appointment.pk]
            assert (
                crm_sync.appointment_crm_sync(appointment_id=appointment.pk)
                == "created"
            )

    appointment.refresh_from_db()
    assert (appointment.crm_sync_status, appointment.crm_sync_error) == (
        CrmSyncStatus.SYNCED,
        "",
    )


def test_gives_up_after_the_configured_attempts(
    live, store, tint, settings, monkeypatch
):
    monkeypatch.setattr("leads.shopmonkey.time.sleep", lambda seconds: None)
    settings.CRM_SYNC_MAX_ATTEMPTS = 2
    lead = _lead(store)
    with time_machine.travel(NOW, tick=False):
        appointment = services.appointment_book(
            lead=lead, service=tint, starts_at=TUESDAY_10, source="chat"
        )
    with respx.mock(assert_all_called=False) as api:
        api.post(f"{API}/v3/appointment").mock(
            return_value=httpx.Response(400, json={"success": False, "message": "bad"})
        )
        crm_sync.appointment_crm_sync(appointment_id=appointment.pk)
        crm_sync.appointment_crm_sync(appointment_id=appointment.pk)

    appointment.refresh_from_db()
    assert (appointment.crm_sync_status, appointment.crm_sync_attempts) == (
        CrmSyncStatus.GAVE_UP,
        2,
    )
    assert appointment.status == AppointmentStatus.BOOKED


def test_a_lead_without_a_crm_connection_is_marked_not_configured(
    live, customer, tint, django_capture_on_commit_callbacks
):
    with (
        time_machine.travel(NOW, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        appointment = services.appointment_book(
            lead=customer, service=tint, starts_at=TUESDAY_10, source="staff"
        )
    appointment.refresh_from_db()
    assert appointment.crm_sync_status == CrmSyncStatus.NOT_CONFIGURED
