"""The franchise dashboard: its figures (leads.dashboard) and its admin page."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from appointments.models import Appointment
from chat.models import ChatMessage, ChatSession
from leads import dashboard
from leads.models import Lead, LeadStatus
from messaging.models import OptOut, OutboundMessage
from tests.factories import (
    LeadFactory,
    LocationFactory,
    ServiceCatalogItemFactory,
    StaffMembershipFactory,
    SuperUserFactory,
    UserFactory,
)

URL = "/admin/leads/lead/dashboard/"
FIRST, LAST = date(2026, 3, 1), date(2026, 3, 10)
NOW = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
_sequence = itertools.count()


def at(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    """A moment of March 2026, UTC (day 0 is the last of February)."""
    return datetime(2026, 3, 1, hour, minute, second, tzinfo=UTC) + timedelta(
        days=day - 1
    )


def lead(location, created, *, status=LeadStatus.NEW, crm=None, **stages) -> Lead:
    """A lead created at ``created`` (= ingested); ``crm`` seconds before it was in the
    CRM; each stage given as seconds after ``created``."""
    values = {
        "location": location,
        "status": status,
        "created_at": created,
        "ingested_at": created,
        "crm_created_at": None if crm is None else created - timedelta(seconds=crm),
    }
    for name, seconds in stages.items():
        values[name] = created + timedelta(seconds=seconds)
    return LeadFactory(**values)


def message(location, created, status, *, lead=None, reason="") -> OutboundMessage:
    return OutboundMessage.objects.create(
        lead=lead, location=location, channel="sms", kind="cadence", to="+16195550100",
        body="hi", status=status, block_reason=reason, created_at=created,
    )  # fmt: skip


def reply(lead: Lead, created, cost: str, role: str = "assistant") -> ChatMessage:
    session, _ = ChatSession.objects.get_or_create(lead=lead)
    return ChatMessage.objects.create(
        session=session, role=role, body="...", cost=Decimal(cost), provider="fake",
        input_tokens=100, output_tokens=50, created_at=created,
    )  # fmt: skip


def booking(lead: Lead, created, status: str = "booked", source: str = "chat"):
    starts = datetime(2026, 4, 1, 16, tzinfo=UTC) + timedelta(hours=3 * next(_sequence))
    return Appointment.objects.create(
        lead=lead, location=lead.location, service=ServiceCatalogItemFactory(), bay=1,
        starts_at=starts, ends_at=starts + timedelta(hours=2), status=status,
        source=source, price_cents=29900, created_at=created,
    )  # fmt: skip


def opt_out(address: str, created, channel: str = "sms") -> OptOut:
    return OptOut.objects.create(
        channel=channel, address=address, source="sms_keyword", created_at=created
    )


@pytest.fixture(autouse=True)
def utc_days(settings):
    settings.TIME_ZONE = "UTC"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def store_a(tenant):
    return LocationFactory(name="Alpha Store")


@pytest.fixture
def store_b(tenant):
    return LocationFactory(name="Bravo Store")


@pytest.fixture
def boss(tenant):
    return SuperUserFactory(username="boss")


def location_staff(location, *, username="store-a", codenames=("view_lead",)):
    staff = UserFactory(username=username, is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    StaffMembershipFactory(user=staff, location=location)
    return staff


@pytest.fixture
def staff_a(store_a):
    return location_staff(store_a)


@pytest.fixture
def dataset(store_a, store_b):
    """A small brand whose figures are known by hand (see each test)."""
    a = [
        # ingested → touch 60..300 s; CRM → ingested 10..50 s
        lead(store_a, at(2, 9), status=LeadStatus.APPOINTMENT_SET, crm=10,
             first_contacted_at=60, engaged_at=660, booked_at=4260),
        lead(store_a, at(2, 15), status=LeadStatus.APPOINTMENT_SET, crm=20,
             first_contacted_at=120, engaged_at=1320, booked_at=8520),
        lead(store_a, at(5, 8), status=LeadStatus.ENGAGED, crm=30,
             first_contacted_at=180, engaged_at=2580),
        lead(store_a, at(5, 10), status=LeadStatus.CONTACTED, crm=40,
             first_contacted_at=240),
        lead(store_a, at(5, 11), status=LeadStatus.LOST, crm=50,
             first_contacted_at=300, lost_at=9000),
        lead(store_a, at(10, 23, 59, 59)),  # the period's last second; no stages yet
    ]  # fmt: skip
    # Outside the period, with durations that would move every figure.
    before = lead(store_a, at(0, 23, 59, 59), status=LeadStatus.APPOINTMENT_SET,
                  crm=99999, first_contacted_at=99999, engaged_at=199999, booked_at=299999)  # fmt: skip
    lead(store_a, at(11, 0), status=LeadStatus.CONTACTED, crm=99999,
         first_contacted_at=99999)  # fmt: skip
    b = [
        lead(store_b, at(3, 12), status=LeadStatus.APPOINTMENT_SET, crm=1000,
             first_contacted_at=1000, engaged_at=1000, booked_at=1000),
        lead(store_b, at(3, 13), status=LeadStatus.QUALIFIED, crm=2000,
             first_contacted_at=2000, engaged_at=2000, qualified_at=2000),
    ]  # fmt: skip
    # Messages at A: 2 sent (sent, recorded), 2 blocked, 2 failed (failed, unknown), 1 sending.
    message(store_a, at(2, 10), "sent", lead=a[0])
    message(store_a, at(2, 11), "recorded", lead=a[1])
    message(store_a, at(5, 9), "blocked", reason="opted_out")
    message(store_a, at(5, 9), "blocked", reason="quiet_hours")
    message(store_a, at(6, 9), "failed")
    message(store_a, at(6, 10), "unknown")
    message(store_a, at(6, 11), "sending")
    message(store_a, at(11, 0), "sent")  # outside
    message(store_b, at(3, 12), "sent", lead=b[0])
    message(store_b, at(3, 12), "blocked", reason="quiet_hours")
    # Opt-outs: two of A's leads, one of B's, one of nobody's, one outside the period.
    opt_out(a[0].phone, at(4))
    opt_out(a[1].email, at(4), channel="email")
    opt_out(b[0].phone, at(4))
    opt_out("+16195559999", at(7))
    opt_out(a[2].phone, at(0, 23))
    # AI: A 0.10 + 0.20 (+ a customer message's cost that does not count); B 0.30.
    reply(a[0], at(2, 10), "0.10")
    reply(a[0], at(2, 11), "0.20")
    reply(a[0], at(2, 11), "5.00", role="customer")
    reply(a[1], at(11, 1), "1.00")  # outside
    reply(b[0], at(3, 14), "0.30")
    # Bookings: A 2 (one completed since), B 1, one of A's before the period.
    booking(a[0], at(2, 12))
    booking(a[1], at(2, 18), status="completed", source="staff")
    booking(b[0], at(3, 14))
    booking(before, at(0, 12))
    return {"a": a, "b": b}


def board(user, location_ids=None):
    return dashboard.dashboard(user, FIRST, LAST, location_ids=location_ids)


# --- the figures ------------------------------------------------------------------------


def test_speed_to_lead_median_and_p95_per_stage(dataset, boss, store_a):
    speed = {s.key: s for s in board(boss, [store_a.pk]).leads.speed}
    assert (speed["crm_to_ingested"].count, speed["crm_to_ingested"].median_seconds,
            speed["crm_to_ingested"].p95_seconds) == (5, 30.0, pytest.approx(48.0))  # fmt: skip
    assert speed["ingested_to_touch"].median_seconds == 180.0
    assert speed["ingested_to_touch"].p95_seconds == pytest.approx(288.0)
    # first reply 600, 1200, 2400 s after the first touch
    assert speed["touch_to_reply"].count == 3
    assert speed["touch_to_reply"].median_seconds == 1200.0
    assert speed["touch_to_reply"].p95_seconds == pytest.approx(2280.0)
    # booked 3600 and 7200 s after the reply
    assert speed["reply_to_booked"].median_seconds == 5400.0
    assert speed["reply_to_booked"].p95_seconds == pytest.approx(7020.0)
    # CRM → booked: 4270 and 8540 s
    assert speed["crm_to_booked"].count == 2
    assert speed["crm_to_booked"].median_seconds == 6405.0
    assert speed["crm_to_booked"].p95_seconds == pytest.approx(4270 + 0.95 * 4270)
    assert speed["ingested_to_touch"].median_display == "3 min"


def test_speed_ignores_leads_without_the_stage(boss, store_a, clock):
    lead(store_a, at(2), first_contacted_at=60)
    lead(store_a, at(2))  # never touched: no duration, not a zero
    speed = {s.key: s for s in board(boss).leads.speed}
    assert (speed["ingested_to_touch"].count, speed["ingested_to_touch"].median_seconds) == (1, 60.0)  # fmt: skip
    assert (speed["touch_to_reply"].count, speed["touch_to_reply"].median_seconds) == (0, None)  # fmt: skip


def test_funnel_counts_leads_created_in_the_period_by_status(dataset, boss):
    figures = board(boss).leads
    assert figures.total == 8
    assert {t.key: t.count for t in figures.by_status} == {
        "new": 1, "contacted": 1, "engaged": 1, "qualified": 1,
        "appointment_set": 3, "completed": 0, "lost": 1,
    }  # fmt: skip
    assert {t.key: t.count for t in figures.reached} == {
        "first_contacted_at": 7, "engaged_at": 5, "qualified_at": 1,
        "booked_at": 3, "completed_at": 0, "lost_at": 1,
    }  # fmt: skip


def test_leads_per_day_covers_every_day_of_the_period(dataset, boss):
    per_day = board(boss).leads_per_day
    assert list(per_day) == [date(2026, 3, d) for d in range(1, 11)]
    assert per_day == {
        date(2026, 3, 1): 0, date(2026, 3, 2): 2, date(2026, 3, 3): 2,
        date(2026, 3, 4): 0, date(2026, 3, 5): 3, date(2026, 3, 6): 0,
        date(2026, 3, 7): 0, date(2026, 3, 8): 0, date(2026, 3, 9): 0,
        date(2026, 3, 10): 1,
    }  # fmt: skip


def test_period_boundaries_are_whole_days(dataset, boss, store_a):
    # The first second of March 11 and the last of February are outside.
    last_day = dashboard.dashboard(boss, LAST, LAST, location_ids=[store_a.pk])
    assert last_day.leads.total == 1
    next_day = dashboard.dashboard(
        boss, date(2026, 3, 11), date(2026, 3, 11), location_ids=[store_a.pk]
    )
    assert next_day.leads.total == 1
    assert next_day.messages.sent == 1
    assert next_day.ai_cost == Decimal("1.00")
    day_before = dashboard.dashboard(boss, date(2026, 2, 28), date(2026, 2, 28))
    assert (day_before.leads.total, day_before.bookings_total, day_before.opt_outs) == (1, 1, 1)  # fmt: skip


def test_days_are_in_the_django_time_zone(boss, store_a, settings):
    settings.TIME_ZONE = "America/New_York"
    lead(store_a, datetime(2026, 3, 2, 3, 0, tzinfo=UTC))  # March 1, 22:00 in New York
    figures = dashboard.dashboard(boss, date(2026, 3, 1), date(2026, 3, 2))
    assert figures.leads_per_day == {date(2026, 3, 1): 1, date(2026, 3, 2): 0}
    assert dashboard.dashboard(boss, date(2026, 3, 2), date(2026, 3, 2)).leads.total == 0  # fmt: skip


def test_messages_by_status_group_and_block_reason(dataset, boss, store_a):
    messages = board(boss, [store_a.pk]).messages
    assert (messages.sent, messages.blocked, messages.failed, messages.total) == (2, 2, 2, 7)  # fmt: skip
    by_day = {d.day: d for d in messages.days}
    assert (by_day[date(2026, 3, 2)].sent, by_day[date(2026, 3, 5)].blocked,
            by_day[date(2026, 3, 6)].failed, by_day[date(2026, 3, 6)].total) == (2, 2, 2, 3)  # fmt: skip
    assert {t.key: t.count for t in messages.block_reasons} == {
        "opted_out": 1,
        "quiet_hours": 1,
    }
    brand = board(boss).messages
    assert (brand.sent, brand.blocked, brand.failed) == (3, 3, 2)
    assert brand.block_reasons[0].key == "quiet_hours"  # the most frequent first


def test_opt_outs_brand_wide_and_by_location(dataset, boss, store_a, store_b):
    assert board(boss).opt_outs == 4
    assert board(boss).opt_outs_per_day[date(2026, 3, 4)] == 3
    assert (
        board(boss, [store_a.pk]).opt_outs == 2
    )  # the phone and the email of A's leads
    assert board(boss, [store_b.pk]).opt_outs == 1
    assert board(boss).opt_outs_note == ""
    assert "no location" in board(boss, [store_a.pk]).opt_outs_note


def test_ai_cost_per_day_and_per_booking(dataset, boss, store_a):
    brand = board(boss)
    assert brand.ai_cost == Decimal("0.60")
    assert brand.ai_replies == 3
    assert brand.bookings_total == 3
    assert brand.ai_cost_per_booking == Decimal("0.2000")
    cost = {d.day: d.cost for d in brand.ai_cost_per_day}
    assert (cost[date(2026, 3, 2)], cost[date(2026, 3, 3)], cost[date(2026, 3, 4)]) == (
        Decimal("0.30"), Decimal("0.30"), Decimal(0),
    )  # fmt: skip
    mine = board(boss, [store_a.pk])
    assert (mine.ai_cost, mine.ai_cost_per_booking) == (Decimal("0.30"), Decimal("0.1500"))  # fmt: skip


def test_no_booking_means_no_cost_per_booking(boss, store_a, clock):
    reply(lead(store_a, at(2)), at(2), "0.05")
    assert board(boss).ai_cost_per_booking is None


def test_bookings_per_location(dataset, boss, store_a, store_b):
    rows = board(boss).bookings
    assert [(r.name, r.total, r.booked, r.completed, r.by_assistant) for r in rows] == [
        ("Alpha Store", 2, 1, 1, 1),
        ("Bravo Store", 1, 1, 0, 1),
    ]


def test_chart_data_is_plain_json(dataset, boss):
    data = board(boss).chart_data()
    assert json.loads(json.dumps(data)) == data
    assert data["days"][0] == "2026-03-01"
    assert data["leads"][1] == 2
    assert data["aiCost"][1] == pytest.approx(0.3)
    assert data["bookings"]["labels"] == ["Alpha Store", "Bravo Store"]
    # brand-wide first touch: 60, 120, 180, 240, 300 s at A, 1000 and 2000 s at B
    assert data["speed"]["medianMinutes"][1] == 4.0


# --- scope ---------------------------------------------------------------------------------


def same_figures(one, other) -> bool:
    return (
        one.chart_data() == other.chart_data()
        and one.leads == other.leads
        and one.messages == other.messages
        and one.opt_outs_per_day == other.opt_outs_per_day
        and one.ai_cost_per_day == other.ai_cost_per_day
        and one.bookings == other.bookings
    )


def test_location_staff_see_their_locations_figures(dataset, boss, staff_a, store_a):
    mine = board(staff_a)
    assert mine.location_ids == frozenset({store_a.pk})
    assert same_figures(mine, board(boss, [store_a.pk]))
    assert (mine.leads.total, mine.opt_outs, mine.bookings_total) == (6, 2, 2)


def test_other_locations_data_changes_nothing_for_location_staff(
    dataset, staff_a, store_b
):
    before = board(staff_a)
    other = lead(store_b, at(2), status=LeadStatus.APPOINTMENT_SET, crm=5,
                 first_contacted_at=5, engaged_at=5, booked_at=5)  # fmt: skip
    message(store_b, at(2), "failed", lead=other)
    opt_out(other.phone, at(2))
    reply(other, at(2), "9.99")
    booking(other, at(2))
    assert same_figures(board(staff_a), before)


def test_location_staff_asking_for_another_location_get_nothing_of_it(
    dataset, staff_a, store_a, store_b
):
    theirs = board(staff_a, [store_b.pk])
    assert theirs.location_ids == frozenset()
    assert (theirs.leads.total, theirs.messages.total, theirs.opt_outs,
            theirs.ai_cost, theirs.bookings) == (0, 0, 0, Decimal(0), [])  # fmt: skip
    assert same_figures(board(staff_a, [store_a.pk, store_b.pk]), board(staff_a))


def test_staff_without_locations_see_nothing(dataset, tenant):
    nobody = UserFactory(username="nobody", is_staff=True)
    figures = board(nobody)
    assert (figures.leads.total, figures.opt_outs, figures.bookings_total) == (0, 0, 0)


# --- the admin page ----------------------------------------------------------------------------


def get(client, user, **params):
    client.force_login(user)
    return client.get(URL, params)


def test_the_page_renders_for_a_brand_admin(tenant_client, dataset, boss):
    response = get(tenant_client, boss, date_from="2026-03-01", date_to="2026-03-10")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<script id="dashboard-data" type="application/json">' in page
    assert "vendor/chartjs/chart.umd.min.js" in page
    assert "admin/leads/dashboard.js" in page
    assert "Alpha Store" in page
    assert "Bravo Store" in page
    assert "$0.20" in page  # AI cost per booking
    assert "<script>" not in page  # no inline script
    assert response.context["board"].leads.total == 8


def test_the_default_period_is_the_last_30_days(tenant_client, boss, clock):
    response = get(tenant_client, boss)
    period = response.context["board"].period
    assert (period.date_from, period.date_to) == (date(2026, 2, 10), date(2026, 3, 11))


def test_the_page_renders_for_location_staff_with_view_permission(
    tenant_client, dataset, staff_a
):
    response = get(tenant_client, staff_a, date_from="2026-03-01", date_to="2026-03-10")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Alpha Store" in page
    assert (
        "Bravo Store" not in page
    )  # neither in the figures nor in the location select
    assert response.context["board"].leads.total == 6


def test_location_staff_cannot_choose_another_location(
    tenant_client, dataset, staff_a, store_b
):
    response = get(tenant_client, staff_a, location=store_b.pk)
    assert response.status_code == 200
    assert response.context["board"] is None
    assert "Select a valid choice" in response.content.decode()
    assert "dashboard-data" not in response.content.decode()


def test_a_brand_admin_can_choose_one_location(tenant_client, dataset, boss, store_b):
    response = get(
        tenant_client, boss, date_from="2026-03-01", date_to="2026-03-10",
        location=store_b.pk,
    )  # fmt: skip
    assert response.context["board"].leads.total == 2


def test_a_reversed_period_is_refused(tenant_client, boss):
    response = get(tenant_client, boss, date_from="2026-03-10", date_to="2026-03-01")
    assert response.context["board"] is None
    assert "must start before it ends" in response.content.decode()


def test_staff_without_the_view_permission_are_refused(tenant_client, store_a):
    staff = location_staff(store_a, username="no-perm", codenames=())
    assert get(tenant_client, staff).status_code == 403


def test_anonymous_and_non_staff_users_go_to_the_login(tenant_client, tenant):
    assert tenant_client.get(URL).status_code == 302
    customer = UserFactory(username="customer", is_staff=False)
    assert get(tenant_client, customer).status_code == 302


def test_the_lead_list_links_to_the_dashboard(tenant_client, boss):
    """Through an object-tools link of the lead list."""
    tenant_client.force_login(boss)
    assert URL in tenant_client.get("/admin/leads/lead/").content.decode()


# --- a constant number of queries ---------------------------------------------------------


def populate(locations, per_location: int) -> None:
    """``per_location`` leads at each location, each with messages, a conversation,
    an opt-out and (every other one) an appointment, spread over the period."""
    service = ServiceCatalogItemFactory()
    for location in locations:
        for n in range(per_location):
            created = at(1 + n % 10, 8 + n % 10)
            one = lead(location, created, status=LeadStatus.APPOINTMENT_SET,
                       crm=30 + n, first_contacted_at=60 + n, engaged_at=600 + n,
                       booked_at=3600 + n)  # fmt: skip
            message(location, created, "sent", lead=one)
            message(location, created, "blocked", lead=one, reason="quiet_hours")
            opt_out(one.phone, created)
            reply(one, created, "0.01")
            reply(one, created, "0.02")
            if n % 2 == 0:
                starts = datetime(2026, 4, 1, 16, tzinfo=UTC) + timedelta(
                    hours=3 * next(_sequence)
                )
                Appointment.objects.create(
                    lead=one, location=location, service=service, bay=1,
                    starts_at=starts, ends_at=starts + timedelta(hours=2),
                    source="chat", price_cents=29900, created_at=created,
                )  # fmt: skip


def test_the_page_runs_the_same_queries_whatever_the_row_count(
    tenant_client, boss, store_a, store_b, clock
):
    staff = location_staff(store_a, username="counted")
    params = {"date_from": "2026-03-01", "date_to": "2026-03-10"}

    def count(user, **extra) -> int:
        tenant_client.force_login(user)
        with CaptureQueriesContext(connection) as queries:
            response = tenant_client.get(URL, {**params, **extra})
        assert response.status_code == 200
        assert response.context["board"] is not None
        return len(queries)

    populate([store_a, store_b], 2)
    small = (count(boss), count(boss, location=store_a.pk), count(staff))
    populate([store_a, store_b, LocationFactory(name="Charlie Store")], 20)
    assert Lead.objects.count() == 64
    assert (count(boss), count(boss, location=store_a.pk), count(staff)) == small
