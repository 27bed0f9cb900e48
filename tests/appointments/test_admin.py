"""The appointments admin: list, calendar, booking, moving and cancelling, through real admin URLs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from appointments import services
from appointments.models import (
    Appointment,
    AppointmentStatus,
    CrmSyncStatus,
    ScheduledMessage,
)
from leads.models import Lead, LeadStatus
from locations.models import Closure, Location, LocationHours
from tests.appointments.conftest import NOW, TUESDAY_10
from tests.factories import (
    LeadFactory,
    LocationFactory,
    StaffMembershipFactory,
    SuperUserFactory,
    UserFactory,
)

LIST = "/admin/appointments/appointment/"
CALENDAR = f"{LIST}calendar/"
BOOK = f"{LIST}book/"
# How the admin shows TUESDAY_10 in San Diego.
TUESDAY_10_LOCAL = "Tue Nov 17, 2026 10:00 AM PST"


@pytest.fixture
def frozen():
    """Monday morning before opening: every test books and looks at a free future week."""
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def boss_client(frozen, tenant_client):
    tenant_client.force_login(SuperUserFactory(username="boss"))
    return tenant_client


def book(lead: Lead, service, starts_at: datetime = TUESDAY_10) -> Appointment:
    return services.appointment_book(
        lead=lead, service=service, starts_at=starts_at, source="chat"
    )


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def action(name: str, *appointments: Appointment, **extra: str) -> dict:
    return {
        "action": name,
        "_selected_action": [a.pk for a in appointments],
        **extra,
    }


# --- list and calendar -------------------------------------------------------------------


def test_list_shows_a_booked_appointment_at_its_local_time(boss_client, customer, tint):
    appointment = book(customer, tint)
    Appointment.objects.filter(pk=appointment.pk).update(
        crm_sync_status=CrmSyncStatus.FAILED, crm_sync_error="ShopMonkey said 502"
    )

    response = boss_client.get(LIST)

    assert response.status_code == 200
    page = response.content.decode()
    assert TUESDAY_10_LOCAL in page
    assert "Maria" in page
    assert "Ceramic tint, sedan" in page
    assert "Store094" in page
    assert "Failed (will retry)" in page
    assert "ShopMonkey said 502" in page
    assert 'href="/admin/appointments/appointment/calendar/"' in page


def test_calendar_day_shows_the_appointment_in_its_bay_and_rows(
    boss_client, store, customer, tint
):
    appointment = book(customer, tint)

    response = boss_client.get(
        CALENDAR, {"location": store.pk, "date": "2026-11-17", "view": "day"}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "Tuesday, November 17, 2026" in page
    assert "Times in America/Los_Angeles." in page
    assert "10:00 AM - 12:00 PM" in page
    assert f'href="/admin/appointments/appointment/{appointment.pk}/change/"' in page
    # one column per bay, rows every 30 minutes from 09:00 to 18:00
    assert response.context["bays"] == [1, 2, 3]
    rows = response.context["rows"]
    assert [rows[0].label, rows[-1].label, len(rows)] == ["09:00 AM", "05:30 PM", 18]
    ten = rows[2]
    assert ten.label == "10:00 AM"
    assert ten.cells[0].rowspan == 4
    assert ten.cells[0].entries[0].appointment == appointment
    # the spanned rows of bay 1 have no cell of their own
    assert [len(row.cells) for row in rows[2:7]] == [3, 2, 2, 2, 3]


def test_calendar_defaults_to_today_at_the_first_location(boss_client, store):
    response = boss_client.get(CALENDAR)

    assert response.status_code == 200
    assert response.context["location"] == store
    assert response.context["plan"].day.isoformat() == "2026-11-16"
    page = response.content.decode()
    assert "Monday, November 16, 2026" in page
    assert "date=2026-11-15" in page
    assert "date=2026-11-17" in page


def test_calendar_says_when_the_location_is_closed(boss_client, store):
    Closure.objects.create(
        location=store,
        starts_on=date(2026, 11, 26),
        ends_on=date(2026, 11, 26),
        reason="Thanksgiving",
    )

    thanksgiving = boss_client.get(
        CALENDAR, {"location": store.pk, "date": "2026-11-26"}
    )
    sunday = boss_client.get(CALENDAR, {"location": store.pk, "date": "2026-11-22"})

    assert "Closed: Thanksgiving." in thanksgiving.content.decode()
    assert thanksgiving.context["rows"] == []
    assert "Closed on Sundays." in sunday.content.decode()


def test_week_view_lists_each_day_by_time_and_bay(boss_client, store, customer, tint):
    tuesday = book(customer, tint)
    other = LeadFactory(location=store, first_name="Jonas")
    thursday = book(other, tint, TUESDAY_10 + timedelta(days=2, hours=3))

    response = boss_client.get(
        CALENDAR, {"location": store.pk, "date": "2026-11-18", "view": "week"}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "Week of Monday, November 16, 2026" in page
    days = response.context["days"]
    assert [plan.day.isoformat() for plan, _ in days] == [
        f"2026-11-{day}" for day in range(16, 23)
    ]
    entries = {
        plan.day.isoformat(): [e.appointment for e in plan.entries] for plan, _ in days
    }
    assert entries["2026-11-17"] == [tuesday]
    assert entries["2026-11-19"] == [thursday]
    assert "10:00 AM - 12:00 PM" in page
    assert "01:00 PM - 03:00 PM" in page
    assert days[-1][0].notice == "Closed on Sundays."
    assert "date=2026-11-11" in page
    assert "date=2026-11-25" in page


# --- booking ------------------------------------------------------------------------------


def test_booking_through_the_form_creates_an_appointment(
    boss_client, store, customer, tint
):
    # the calendar's "Book" page offers the location's open leads and offered services
    start = boss_client.get(BOOK, {"location": store.pk, "date": "2026-11-17"})
    assert start.status_code == 200
    form = start.context["form"]
    assert list(form.fields["lead"].queryset) == [customer]
    assert list(form.fields["service"].queryset) == [tint]
    assert "Ceramic tint, sedan ($449.00, 120 min)" in start.content.decode()

    # choosing lead, service and day shows the day's free times
    query = {
        "location": store.pk,
        "lead": customer.pk,
        "service": tint.pk,
        "date": "2026-11-17",
    }
    slots = boss_client.get(BOOK, query)
    choices = dict(slots.context["form"].fields["slot"].widget.choices)
    assert choices[TUESDAY_10.isoformat()] == "10:00 AM (3 bays free)"

    # choosing one books it
    response = boss_client.post(
        f"{BOOK}?location={store.pk}", {**query, "slot": TUESDAY_10.isoformat()}
    )

    assert response.status_code == 302
    assert response.url == (f"{CALENDAR}?location={store.pk}&date=2026-11-17&view=day")
    appointment = Appointment.objects.get(lead=customer)
    assert (appointment.starts_at, appointment.source, appointment.booked_by) == (
        TUESDAY_10,
        "staff",
        User.objects.get(username="boss"),
    )
    customer.refresh_from_db()
    assert customer.status == LeadStatus.APPOINTMENT_SET
    calendar = boss_client.get(response.url)
    assert any(
        "Booked Ceramic tint, sedan for Maria" in m for m in messages_of(calendar)
    )


def test_a_time_taken_meanwhile_is_refused_with_alternatives(
    boss_client, store, customer, tint
):
    store.bays = 1
    store.save()
    query = {"lead": customer.pk, "service": tint.pk, "date": "2026-11-17"}
    page = boss_client.get(f"{BOOK}{customer.pk}/", query)
    assert TUESDAY_10.isoformat() in dict(
        page.context["form"].fields["slot"].widget.choices
    )
    # someone else takes the only bay before staff press "Book"
    book(LeadFactory(location=store), tint)

    response = boss_client.post(
        f"{BOOK}{customer.pk}/", {**query, "slot": TUESDAY_10.isoformat()}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "That time is taken. Free nearby: Tue Nov 17 12:00 PM" in page
    refreshed = dict(response.context["form"].fields["slot"].widget.choices)
    assert TUESDAY_10.isoformat() not in refreshed
    assert (TUESDAY_10 + timedelta(hours=2)).isoformat() in refreshed
    assert not Appointment.objects.filter(lead=customer).exists()


def test_a_second_booking_needs_the_additional_box(boss_client, store, customer, tint):
    first = book(customer, tint)
    data = {
        "lead": customer.pk,
        "service": tint.pk,
        "date": "2026-11-18",
        "slot": (TUESDAY_10 + timedelta(days=1)).isoformat(),
    }

    page = boss_client.get(f"{BOOK}{customer.pk}/", {"service": tint.pk})
    refused = boss_client.post(f"{BOOK}{customer.pk}/", data)
    allowed = boss_client.post(f"{BOOK}{customer.pk}/", {**data, "additional": "on"})

    assert [a for a, _ in page.context["current"]] == [first]
    assert refused.status_code == 200
    assert (
        "This customer already has an appointment; move it or cancel it first."
        in refused.content.decode()
    )
    assert allowed.status_code == 302
    second = Appointment.objects.exclude(pk=first.pk).get(lead=customer)
    assert second.is_additional


# --- moving and cancelling ----------------------------------------------------------------


def test_moving_through_the_form(boss_client, store, customer, tint):
    store.bays = 1
    store.save()
    appointment = book(customer, tint)
    url = f"{LIST}move/{appointment.pk}/"

    change = boss_client.get(f"{LIST}{appointment.pk}/change/")
    same_day = boss_client.get(url)
    next_day = boss_client.get(url, {"date": "2026-11-18"})
    response = boss_client.post(
        url,
        {"date": "2026-11-18", "slot": (TUESDAY_10 + timedelta(days=1)).isoformat()},
    )

    assert f'href="{url}"' in change.content.decode()
    # its own time counts as free when moving it, even with one bay
    assert TUESDAY_10.isoformat() in dict(
        same_day.context["form"].fields["slot"].widget.choices
    )
    assert "10:00 AM (1 bay free)" in next_day.content.decode()
    assert response.status_code == 302
    assert response.url == f"{LIST}{appointment.pk}/change/"
    appointment.refresh_from_db()
    assert appointment.starts_at == TUESDAY_10 + timedelta(days=1)
    assert appointment.ends_at == TUESDAY_10 + timedelta(days=1, hours=2)


def test_moving_into_a_taken_time_is_refused_with_alternatives(
    boss_client, store, customer, tint
):
    store.bays = 1
    store.save()
    appointment = book(customer, tint)
    book(LeadFactory(location=store), tint, TUESDAY_10 + timedelta(days=1))

    response = boss_client.post(
        f"{LIST}move/{appointment.pk}/",
        {"date": "2026-11-18", "slot": (TUESDAY_10 + timedelta(days=1)).isoformat()},
    )

    assert response.status_code == 200
    assert "That time is taken. Free nearby:" in response.content.decode()
    appointment.refresh_from_db()
    assert appointment.starts_at == TUESDAY_10


def test_cancel_action_asks_for_a_reason(boss_client, customer, tint):
    appointment = book(customer, tint)

    asked = boss_client.post(LIST, action("cancel_appointments", appointment))
    response = boss_client.post(
        LIST,
        action("cancel_appointments", appointment, apply="1", reason="Customer asked"),
        follow=True,
    )

    assert asked.status_code == 200
    assert "reason" in asked.context["form"].fields
    assert TUESDAY_10_LOCAL in asked.content.decode()
    assert "1 appointment(s) cancelled." in messages_of(response)
    appointment.refresh_from_db()
    assert (appointment.status, appointment.cancel_reason) == (
        AppointmentStatus.CANCELLED,
        "Customer asked",
    )


def test_cancel_from_the_change_page(boss_client, customer, tint):
    appointment = book(customer, tint)
    url = f"{LIST}cancel/{appointment.pk}/"

    assert (
        f'href="{url}"'
        in boss_client.get(f"{LIST}{appointment.pk}/change/").content.decode()
    )
    response = boss_client.post(url, {"reason": "Weather"}, follow=True)
    again = boss_client.post(url, {"reason": "Twice"})

    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED
    assert f"Cancelled Maria {customer.last_name}, {TUESDAY_10_LOCAL}." in messages_of(
        response
    )
    assert again.status_code == 200
    assert "Only a booked appointment can be cancelled." in again.content.decode()


def test_no_show_before_the_start_is_refused_with_a_message(
    boss_client, customer, tint
):
    appointment = book(customer, tint)

    response = boss_client.post(LIST, action("mark_no_show", appointment), follow=True)

    assert response.status_code == 200
    assert messages_of(response) == [
        f"Maria {customer.last_name}, {TUESDAY_10_LOCAL}: "
        "An appointment that has not started cannot be a no-show."
    ]
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED


def test_no_show_and_completed_after_the_start(frozen, tenant_client, store, tint):
    late, done = LeadFactory(location=store), LeadFactory(location=store)
    missed, worked = book(late, tint), book(done, tint)

    with time_machine.travel(TUESDAY_10 + timedelta(hours=1), tick=False):
        tenant_client.force_login(SuperUserFactory(username="boss"))
        no_show = tenant_client.post(LIST, action("mark_no_show", missed), follow=True)
        completed = tenant_client.post(
            LIST, action("mark_completed", worked), follow=True
        )

    assert "1 appointment(s) marked as no-shows." in messages_of(no_show)
    assert "1 appointment(s) marked completed." in messages_of(completed)
    missed.refresh_from_db()
    worked.refresh_from_db()
    assert (missed.status, worked.status) == (
        AppointmentStatus.NO_SHOW,
        AppointmentStatus.COMPLETED,
    )


def test_retry_crm_sync_resets_a_failed_sync(boss_client, store, customer, tint):
    failed = book(customer, tint)
    synced = book(LeadFactory(location=store), tint)
    Appointment.objects.filter(pk=failed.pk).update(
        crm_sync_status=CrmSyncStatus.GAVE_UP, crm_sync_attempts=8
    )
    Appointment.objects.filter(pk=synced.pk).update(
        crm_sync_status=CrmSyncStatus.SYNCED
    )

    response = boss_client.post(
        LIST, action("retry_crm_sync", failed, synced), follow=True
    )

    assert messages_of(response) == [
        "CRM sync queued again for 1 appointment(s).",
        "1 appointment(s) had no failed CRM sync and were left as they are.",
    ]
    failed.refresh_from_db()
    synced.refresh_from_db()
    assert (failed.crm_sync_status, failed.crm_sync_attempts) == (
        CrmSyncStatus.PENDING,
        0,
    )
    assert synced.crm_sync_status == CrmSyncStatus.SYNCED


def test_change_page_edits_only_the_notes(boss_client, customer, tint):
    appointment = book(customer, tint)
    url = f"{LIST}{appointment.pk}/change/"
    Appointment.objects.filter(pk=appointment.pk).update(
        crm_sync_status=CrmSyncStatus.FAILED
    )

    page = boss_client.get(url)
    saved = boss_client.post(url, {"notes": "Parks at the back", "bay": "3"})
    retried = boss_client.post(
        url, {"notes": "Parks at the back", "_retry_crm_sync": "1"}
    )

    assert list(page.context["adminform"].form.fields) == ["notes"]
    assert 'name="_retry_crm_sync"' in page.content.decode()
    assert TUESDAY_10_LOCAL in page.content.decode()
    assert saved.status_code == 302
    assert retried.status_code == 302
    appointment.refresh_from_db()
    assert (appointment.notes, appointment.bay, appointment.starts_at) == (
        "Parks at the back",
        1,
        TUESDAY_10,
    )
    assert appointment.crm_sync_status == CrmSyncStatus.PENDING


def test_appointments_are_not_deleted_nor_added_by_hand(boss_client, customer, tint):
    appointment = book(customer, tint)

    assert boss_client.get(f"{LIST}{appointment.pk}/delete/").status_code == 403
    assert boss_client.get(f"{LIST}add/").url == BOOK


def test_scheduled_messages_are_listed_read_only(boss_client, customer, tint):
    appointment = book(customer, tint)

    response = boss_client.get("/admin/appointments/scheduledmessage/")

    assert response.status_code == 200
    assert {m.pk for m in response.context["cl"].result_list} == set(
        ScheduledMessage.objects.filter(appointment=appointment).values_list(
            "pk", flat=True
        )
    )
    assert response.context["has_add_permission"] is False


# --- scoping ------------------------------------------------------------------------------


@dataclass
class Scene:
    mine: Location
    theirs: Location
    my_lead: Lead
    their_lead: Lead
    my_appointment: Appointment
    their_appointment: Appointment


def open_all_week(location: Location) -> Location:
    LocationHours.objects.bulk_create(
        LocationHours(
            location=location, weekday=day, opens_at=time(9), closes_at=time(18)
        )
        for day in range(7)
    )
    return location


@pytest.fixture
def scene(frozen, store, tint) -> Scene:
    theirs = open_all_week(LocationFactory(name="Theirs"))
    my_lead = LeadFactory(location=store, first_name="Mine")
    their_lead = LeadFactory(location=theirs, first_name="Theirs")
    return Scene(
        mine=store,
        theirs=theirs,
        my_lead=my_lead,
        their_lead=their_lead,
        my_appointment=book(
            LeadFactory(location=store, first_name="Booked mine"), tint
        ),
        their_appointment=book(
            LeadFactory(location=theirs, first_name="Booked theirs"), tint
        ),
    )


@pytest.fixture
def staff_client(scene, tenant_client):
    staff = UserFactory(username="store094")
    staff.user_permissions.set(
        Permission.objects.filter(
            codename__in=[
                "view_appointment",
                "add_appointment",
                "change_appointment",
                "view_scheduledmessage",
                "view_lead",
            ]
        )
    )
    StaffMembershipFactory(user=staff, location=scene.mine)
    tenant_client.force_login(staff)
    return tenant_client


def test_limited_staff_list_only_their_locations_appointments(scene, staff_client):
    response = staff_client.get(LIST)
    scheduled = staff_client.get("/admin/appointments/scheduledmessage/")

    assert {a.pk for a in response.context["cl"].result_list} == {
        scene.my_appointment.pk
    }
    assert "Theirs" not in response.content.decode()  # not even in the location filter
    assert {m.appointment_id for m in scheduled.context["cl"].result_list} == {
        scene.my_appointment.pk
    }


def test_limited_staff_calendar_is_theirs_only(scene, staff_client):
    default = staff_client.get(CALENDAR, {"date": "2026-11-17"})
    other = staff_client.get(CALENDAR, {"location": scene.theirs.pk})
    week = staff_client.get(
        CALENDAR, {"location": scene.theirs.pk, "date": "2026-11-17", "view": "week"}
    )
    garbage = staff_client.get(CALENDAR, {"location": "x"})

    assert default.status_code == 200
    assert default.context["location"] == scene.mine
    assert list(default.context["locations"]) == [scene.mine]
    page = default.content.decode()
    assert "Booked mine" in page
    assert "Booked theirs" not in page
    assert (other.status_code, week.status_code, garbage.status_code) == (404, 404, 404)


def test_limited_staff_booking_form_offers_only_their_leads(scene, staff_client, tint):
    page = staff_client.get(BOOK)
    other_location = staff_client.get(BOOK, {"location": scene.theirs.pk})

    assert page.status_code == 200
    assert page.context["location"] == scene.mine
    leads = set(page.context["form"].fields["lead"].queryset)
    assert scene.my_lead in leads
    assert scene.their_lead not in leads
    assert list(page.context["locations"]) == [scene.mine]
    assert other_location.status_code == 404


def test_limited_staff_cannot_book_another_locations_lead(scene, staff_client, tint):
    slot = (TUESDAY_10 + timedelta(hours=3)).isoformat()
    data = {"service": tint.pk, "date": "2026-11-17", "slot": slot}

    by_url = staff_client.get(f"{BOOK}{scene.their_lead.pk}/")
    by_url_post = staff_client.post(f"{BOOK}{scene.their_lead.pk}/", data)
    forged = staff_client.post(
        f"{BOOK}?location={scene.mine.pk}", {**data, "lead": scene.their_lead.pk}
    )
    forged_location = staff_client.post(
        BOOK, {**data, "lead": scene.their_lead.pk, "location": scene.theirs.pk}
    )

    assert (by_url.status_code, by_url_post.status_code) == (404, 404)
    assert forged.status_code == 200
    assert "Select a valid choice" in forged.content.decode()
    assert forged_location.status_code == 404
    assert not Appointment.objects.filter(lead=scene.their_lead).exists()


def test_limited_staff_cannot_touch_another_locations_appointment(scene, staff_client):
    theirs = scene.their_appointment
    slot = (TUESDAY_10 + timedelta(days=1)).isoformat()

    change = staff_client.get(f"{LIST}{theirs.pk}/change/")
    move = staff_client.get(f"{LIST}move/{theirs.pk}/")
    move_post = staff_client.post(
        f"{LIST}move/{theirs.pk}/", {"date": "2026-11-18", "slot": slot}
    )
    cancel = staff_client.post(f"{LIST}cancel/{theirs.pk}/", {"reason": "Sneaky"})
    bulk = staff_client.post(
        LIST,
        action(
            "cancel_appointments",
            scene.my_appointment,
            theirs,
            apply="1",
            reason="Sneaky",
        ),
    )

    assert (change.status_code, change.url) == (302, "/admin/")
    assert (move.status_code, move_post.status_code, cancel.status_code) == (
        404,
        404,
        404,
    )
    assert bulk.status_code == 302
    theirs.refresh_from_db()
    scene.my_appointment.refresh_from_db()
    assert (theirs.status, theirs.starts_at) == (AppointmentStatus.BOOKED, TUESDAY_10)
    assert scene.my_appointment.status == AppointmentStatus.CANCELLED
    # their own appointment's move page works
    assert staff_client.get(f"{LIST}move/{scene.my_appointment.pk}/").status_code == 200


def test_view_only_staff_cannot_book_or_move(scene, tenant_client):
    viewer = UserFactory(username="viewer")
    viewer.user_permissions.set(Permission.objects.filter(codename="view_appointment"))
    StaffMembershipFactory(user=viewer, location=scene.mine)
    tenant_client.force_login(viewer)

    assert tenant_client.get(CALENDAR).status_code == 200
    assert tenant_client.get(BOOK).status_code == 403
    assert (
        tenant_client.get(f"{LIST}move/{scene.my_appointment.pk}/").status_code == 403
    )


# --- queries ------------------------------------------------------------------------------


def _appointments(store, tint, count: int, offset: int = 0) -> None:
    Appointment.objects.bulk_create(
        Appointment(
            lead=LeadFactory(location=store),
            location=store,
            service=tint,
            bay=1 + index % 3,
            starts_at=TUESDAY_10 + timedelta(hours=3 * (offset + index)),
            ends_at=TUESDAY_10 + timedelta(hours=3 * (offset + index) + 2),
            source="staff",
            price_cents=44900,
            crm_sync_error="timeout" if index % 2 else "",
        )
        for index in range(count)
    )


def _changelist_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(LIST)
    assert response.status_code == 200
    return len(queries)


def test_changelist_queries_do_not_grow_with_the_rows(boss_client, store, tint):
    _appointments(store, tint, 3)
    few = _changelist_queries(boss_client)
    _appointments(store, tint, 27, offset=3)
    many = _changelist_queries(boss_client)

    assert Appointment.objects.count() == 30
    assert many == few
