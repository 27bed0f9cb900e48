import threading
from datetime import timedelta
from itertools import product

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from leadorch.errors import ApplicationError
from leads import services
from leads.models import Lead, LeadEvent, LeadEventKind, LeadStatus
from leads.services import TRANSITIONS, LeadTransitionError
from tests.factories import LocationFactory

S = LeadStatus
ALLOWED = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
REFUSED = sorted(set(product(S.values, S.values)) - ALLOWED)


def _lead_in(status: str) -> Lead:
    """A lead brought to ``status`` by valid moves."""
    lead = services.lead_create(
        location=LocationFactory(), first_name="Ana", email="ana@example.com"
    )
    path = {
        S.NEW: [],
        S.CONTACTED: [S.CONTACTED],
        S.ENGAGED: [S.CONTACTED, S.ENGAGED],
        S.QUALIFIED: [S.CONTACTED, S.ENGAGED, S.QUALIFIED],
        S.APPOINTMENT_SET: [S.CONTACTED, S.APPOINTMENT_SET],
        S.COMPLETED: [S.APPOINTMENT_SET, S.COMPLETED],
        S.LOST: [S.LOST],
    }[status]
    for step in path:
        services.lead_transition(lead=lead, to_status=step, reason="test")
    return lead


def test_create_records_event_and_normalises_phone(tenant):
    # when
    lead = services.lead_create(
        location=LocationFactory(),
        first_name="Ana",
        email="ANA@Example.com",
        phone="(619) 555-0141",
    )

    # then
    lead.refresh_from_db()
    assert lead.status == S.NEW
    assert lead.phone == "+16195550141"
    assert lead.email == "ana@example.com"
    assert lead.ingested_at is not None
    event = LeadEvent.objects.get(lead=lead)
    assert (event.kind, event.to_status) == (LeadEventKind.CREATED, S.NEW)


def test_full_funnel_stamps_each_first_time(tenant):
    lead = _lead_in(S.NEW)
    for status in (S.CONTACTED, S.ENGAGED, S.QUALIFIED, S.APPOINTMENT_SET, S.COMPLETED):
        services.lead_transition(lead=lead, to_status=status)

    lead.refresh_from_db()
    assert lead.status == S.COMPLETED
    stamps = [
        lead.first_contacted_at,
        lead.engaged_at,
        lead.qualified_at,
        lead.booked_at,
        lead.completed_at,
    ]
    assert all(stamps)
    assert stamps == sorted(stamps)
    moves = list(
        LeadEvent.objects.filter(
            lead=lead, kind=LeadEventKind.STATUS_CHANGED
        ).values_list("from_status", "to_status")
    )
    assert moves == [
        (S.NEW, S.CONTACTED),
        (S.CONTACTED, S.ENGAGED),
        (S.ENGAGED, S.QUALIFIED),
        (S.QUALIFIED, S.APPOINTMENT_SET),
        (S.APPOINTMENT_SET, S.COMPLETED),
    ]


@pytest.mark.parametrize(("from_status", "to_status"), REFUSED)
def test_refuses_moves_outside_the_lifecycle(tenant, from_status, to_status):
    # given
    lead = _lead_in(from_status)
    events_before = LeadEvent.objects.filter(lead=lead).count()

    # when / then
    with pytest.raises(LeadTransitionError) as refused:
        services.lead_transition(lead=lead, to_status=to_status)
    assert S(from_status).label in refused.value.message
    assert S(to_status).label in refused.value.message
    lead.refresh_from_db()
    assert lead.status == from_status
    assert LeadEvent.objects.filter(lead=lead).count() == events_before


@pytest.mark.parametrize(
    "from_status", [S.NEW, S.CONTACTED, S.ENGAGED, S.QUALIFIED, S.APPOINTMENT_SET]
)
def test_any_open_lead_can_be_lost_with_reason(tenant, from_status):
    lead = _lead_in(from_status)

    services.lead_mark_lost(lead=lead, reason="Went with another shop")

    lead.refresh_from_db()
    assert lead.status == S.LOST
    assert lead.lost_reason == "Went with another shop"
    assert lead.lost_at is not None


def test_mark_lost_needs_a_reason(tenant):
    lead = _lead_in(S.CONTACTED)
    with pytest.raises(ApplicationError, match="Say why"):
        services.lead_mark_lost(lead=lead, reason="  ")
    lead.refresh_from_db()
    assert lead.status == S.CONTACTED


def test_advance_moves_forward_only(tenant):
    lead = _lead_in(S.ENGAGED)

    assert (
        services.lead_advance(lead=lead, to_status=S.CONTACTED) is False
    )  # behind: ignored
    assert (
        services.lead_advance(lead=lead, to_status=S.ENGAGED) is False
    )  # there already
    assert services.lead_advance(lead=lead, to_status=S.APPOINTMENT_SET) is True

    lead.refresh_from_db()
    assert lead.status == S.APPOINTMENT_SET
    assert (
        LeadEvent.objects.filter(lead=lead, kind=LeadEventKind.STATUS_CHANGED).count()
        == 3
    )


def test_advance_leaves_closed_leads_alone(tenant):
    lead = _lead_in(S.LOST)
    assert services.lead_advance(lead=lead, to_status=S.ENGAGED) is False
    lead.refresh_from_db()
    assert lead.status == S.LOST


def test_first_contact_time_is_kept_when_status_returns(tenant):
    lead = _lead_in(S.APPOINTMENT_SET)
    booked_at = Lead.objects.get(pk=lead.pk).booked_at

    services.lead_transition(lead=lead, to_status=S.ENGAGED, reason="Booking cancelled")
    services.lead_transition(lead=lead, to_status=S.APPOINTMENT_SET, at=timezone.now())

    lead.refresh_from_db()
    assert lead.booked_at == booked_at


@pytest.mark.parametrize("to_status", S.values)
def test_advance_follows_the_funnel_and_the_transitions_from_every_status(
    tenant, to_status
):
    """For every pair of statuses: the lead moves exactly when ``to_status`` is ahead
    in the funnel and allowed from where it stands; a move stores the status, its
    first time and an event, and the caller's instance is the stored lead."""
    for from_status in S.values:
        lead = _lead_in(from_status)
        before = Lead.objects.get(pk=lead.pk)
        events = LeadEvent.objects.filter(lead=lead).count()
        should_move = (
            from_status in services.FUNNEL
            and services._rank(to_status) > services._rank(from_status)
            and to_status in TRANSITIONS[from_status]
        )
        # The event happened an hour ago; the write is now.
        at, written = timezone.now() - timedelta(hours=1), timezone.now()

        moved = services.lead_advance(
            lead=lead, to_status=to_status, reason="Wrote back", at=at
        )

        stored = Lead.objects.get(pk=lead.pk)
        assert moved is should_move, (from_status, to_status)
        if not should_move:
            assert _fields(stored) == _fields(before)
            assert LeadEvent.objects.filter(lead=lead).count() == events
            continue
        assert stored.status == to_status
        assert stored.updated_at >= written
        assert _fields(lead) == _fields(stored)
        stamp = services.STATUS_TIMESTAMP_FIELD.get(to_status)
        if stamp:
            assert getattr(stored, stamp) == (getattr(before, stamp) or at)
        if to_status == S.LOST:
            assert stored.lost_reason == "Wrote back"
        event = LeadEvent.objects.filter(lead=lead).latest("pk")
        assert (event.kind, event.from_status, event.to_status, event.message) == (
            LeadEventKind.STATUS_CHANGED,
            from_status,
            to_status,
            "Wrote back",
        )
        assert event.created_at == at


def _fields(lead: Lead) -> dict:
    return {f.attname: getattr(lead, f.attname) for f in Lead._meta.concrete_fields}


def test_advance_is_one_statement(tenant, django_assert_num_queries):
    lead = _lead_in(S.CONTACTED)
    with django_assert_num_queries(1):
        assert services.lead_advance(lead=lead, to_status=S.ENGAGED) is True


def test_advance_judges_a_lead_moved_while_it_waited_by_where_the_lead_is_now(
    tenant_tx,
):
    """Another transaction holds the lead and closes it as lost; the advance to
    engaged that waited for it finds a closed lead and leaves it alone."""
    lead = _lead_in(S.CONTACTED)
    holding, errors = threading.Event(), []

    def close_as_lost() -> None:
        try:
            with schema_context(tenant_tx.schema_name), transaction.atomic():
                services.lead_transition(
                    lead=Lead.objects.get(pk=lead.pk), to_status=S.LOST, reason="Gone"
                )
                holding.set()
                # Commit once the advance waits for this transaction's lock.
                with connection.cursor() as cursor:
                    for _ in range(200):
                        cursor.execute(
                            "SELECT count(*) FROM pg_locks WHERE NOT granted"
                        )
                        if cursor.fetchone()[0]:
                            break
                        threading.Event().wait(0.05)
                    else:
                        errors.append("the advance never waited for the lock")
        finally:
            connection.close()

    closer = threading.Thread(target=close_as_lost)
    closer.start()
    assert holding.wait(10)
    moved = services.lead_advance(lead=lead, to_status=S.ENGAGED)
    closer.join(10)

    assert errors == []
    assert moved is False
    assert Lead.objects.get(pk=lead.pk).status == S.LOST
    assert not LeadEvent.objects.filter(lead=lead, to_status=S.ENGAGED).exists()


def test_a_transition_is_one_statement_and_a_missing_lead_is_not_found(
    tenant, django_assert_num_queries
):
    lead = _lead_in(S.CONTACTED)
    with django_assert_num_queries(1):
        services.lead_transition(lead=lead, to_status=S.LOST, reason="Gone")
    assert lead.status == S.LOST

    missing = Lead(pk=lead.pk + 1000)
    with pytest.raises(Lead.DoesNotExist):
        services.lead_transition(lead=missing, to_status=S.LOST, reason="Gone")
    with pytest.raises(Lead.DoesNotExist):
        services.lead_advance(lead=missing, to_status=S.ENGAGED)
