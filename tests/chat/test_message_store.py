"""The chat turn's hand-written SQL reads and writes what the ORM would."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache, caches
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import tenant_context

from appointments.models import Appointment
from chat import services as chat_services
from chat.ai import service as ai_service
from chat.ai.base import AssistantText, UserText
from chat.ai.context import context_load
from chat.models import CLIENT_ID_CONSTRAINT, ChatMessage, ChatSession
from leadorch import sql
from leadorch.errors import ApplicationError
from leads.models import Lead, LeadStatus
from locations.models import Location
from tenants.models import Tenant
from tests.factories import LeadFactory, LocationFactory, ServiceCatalogItemFactory
from touchpoints import services as touchpoint_services
from touchpoints.models import (
    OPEN_TOUCHPOINT_STATUSES,
    CadenceEnrollment,
    StopReason,
    TouchPoint,
)


def _values(instance) -> dict:
    return {
        f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields
    }


def test_a_session_is_read_with_its_lead_and_location_as_the_orm_reads_them(
    tenant, django_assert_num_queries
):
    location = LocationFactory(name="Store 12", time_zone="America/Denver")
    lead = LeadFactory(location=location, first_name="Ana", vehicle_make="Kia")
    session = chat_services.session_for_lead(lead=lead)
    ChatSession.objects.filter(pk=session.pk).update(
        offered_slots=[{"id": "S1", "label": "Tue 9:00 AM"}],
        revoked_at=timezone.now(),
        last_message_at=timezone.now() - timedelta(minutes=3),
    )
    expected = ChatSession.objects.select_related("lead__location").get(pk=session.pk)

    with django_assert_num_queries(1):
        read = chat_services.session_get_with_lead(session_id=session.pk)
        # The lead and its location come with it: no query for either.
        assert read.lead.location.name == "Store 12"

    assert _values(read) == _values(expected)
    assert _values(read.lead) == _values(expected.lead)
    assert _values(read.lead.location) == _values(expected.lead.location)
    assert read.offered_slots == [{"id": "S1", "label": "Tue 9:00 AM"}]
    assert isinstance(read.lead, Lead)
    assert isinstance(read.lead.location, Location)
    assert not read._state.adding
    # A loaded instance saves as an update of its row, as one from the ORM does.
    read.handoff_reason = "asked for a person"
    read.save(update_fields=["handoff_reason"])
    assert ChatSession.objects.get(pk=session.pk).handoff_reason == "asked for a person"


def test_an_unknown_session_does_not_exist(tenant):
    with pytest.raises(ChatSession.DoesNotExist):
        chat_services.session_get_with_lead(session_id=987654)


def test_a_customer_message_is_stored_with_the_sessions_totals(tenant):
    session = chat_services.session_for_lead(lead=LeadFactory())
    first = chat_services.customer_message_post(
        session=session, text="How much is tint?", client_id="c-1"
    )
    second = chat_services.customer_message_post(
        session=session, text="And for an SUV?", client_id="c-2"
    )

    for posted in (first, second):
        assert posted.created
        assert _values(ChatMessage.objects.get(pk=posted.message.pk)) == _values(
            posted.message
        )
    stored = ChatSession.objects.get(pk=session.pk)
    assert stored.customer_messages == 2
    assert stored.last_message_at == second.message.created_at
    assert stored.rate_window_start == first.message.created_at
    assert stored.rate_window_messages == 2
    assert stored.channel == "web"


def test_a_resend_stores_nothing_and_leaves_the_totals_alone(tenant):
    session = chat_services.session_for_lead(lead=LeadFactory())
    posted = chat_services.customer_message_post(
        session=session, text="Hello", client_id="same"
    )
    before = ChatSession.objects.get(pk=session.pk)

    again = chat_services.customer_message_post(
        session=ChatSession.objects.select_related("lead").get(pk=session.pk),
        text="Hello",
        client_id="same",
    )

    assert not again.created
    assert again.message.pk == posted.message.pk
    assert ChatMessage.objects.filter(session=session).count() == 1
    after = ChatSession.objects.get(pk=session.pk)
    assert after.customer_messages == before.customer_messages == 1
    assert after.last_message_at == before.last_message_at


def test_the_insert_fails_on_the_client_id_constraint_as_the_orms_would(tenant):
    session = chat_services.session_for_lead(lead=LeadFactory())
    chat_services.customer_message_post(session=session, text="Hi", client_id="dup")
    message = ChatMessage(session=session, role="customer", body="Hi", client_id="dup")

    with pytest.raises(IntegrityError) as raised, transaction.atomic():
        chat_services._customer_message_insert(message, effects=None)

    assert raised.value.__cause__.diag.constraint_name == CLIENT_ID_CONSTRAINT
    assert ChatSession.objects.get(pk=session.pk).customer_messages == 1


def test_a_session_read_before_is_counted_and_closed_as_it_stands(tenant, settings):
    settings.CHAT_RATE_MESSAGES = 2
    lead = LeadFactory()
    touchpoint_services.cadence_start(lead=lead)
    session = chat_services.session_for_lead(lead=lead)
    stale = ChatSession.objects.select_related("lead").get(pk=session.pk)
    for n in range(2):
        chat_services.customer_message_post(session=session, text=f"Question {n}")
    Lead.objects.filter(pk=lead.pk).update(status=LeadStatus.NEW)

    # As read before those two, the session had no message and an empty window:
    # its first message, refused, moves nothing.
    with pytest.raises(chat_services.RateLimitedError):
        chat_services.customer_message_post(session=stale, text="One more")
    ChatSession.objects.filter(pk=session.pk).update(revoked_at=timezone.now())
    with pytest.raises(ApplicationError) as closed:
        chat_services.customer_message_post(session=stale, text="Hello?")

    assert closed.value.code == "revoked"
    assert ChatMessage.objects.filter(session=session).count() == 2
    stored = ChatSession.objects.get(pk=session.pk)
    assert (stored.customer_messages, stored.rate_window_messages) == (2, 2)
    assert Lead.objects.get(pk=lead.pk).status == LeadStatus.NEW
    assert stale.lead.status == LeadStatus.NEW


def test_answers_add_their_tokens_to_the_session(tenant):
    session = chat_services.session_for_lead(lead=LeadFactory())
    rounds = [{"text": "", "calls": [{"id": "t1", "name": "quote"}], "results": []}]
    answers = [
        chat_services.assistant_message_store(
            session=session,
            body=f"Answer {n}",
            channel="web",
            provider="anthropic",
            model="claude-test-1",
            input_tokens=1000 * n,
            output_tokens=50,
            cost=Decimal("0.003750"),
            latency_ms=420,
            tool_calls=rounds,
            fallbacks=[{"provider": "openai", "error": "timed out", "ms": 10}],
            data={"slots": [{"id": "S1", "label": "Tue 9:00 AM"}]},
        )
        for n in (1, 2)
    ]

    for answer in answers:
        stored = ChatMessage.objects.get(pk=answer.pk)
        assert _values(stored) == _values(answer)
        assert stored.cost == Decimal("0.003750")
        assert stored.tool_calls == rounds
    refreshed = ChatSession.objects.get(pk=session.pk)
    assert refreshed.assistant_tokens == 1050 + 2050
    assert refreshed.last_message_at == answers[1].created_at


def test_the_transcript_is_the_newest_messages_oldest_first(tenant):
    session = chat_services.session_for_lead(lead=LeadFactory())
    for n in range(5):
        chat_services.customer_message_post(session=session, text=f"Question {n}")
        chat_services.assistant_message_store(
            session=session,
            body=f"Answer {n}",
            channel="web",
            tool_calls=[{"text": "", "calls": [], "results": [], "n": n}],
        )
    expected = list(
        reversed(ChatMessage.objects.filter(session=session).order_by("-pk")[:3])
    )

    transcript = chat_services.transcript_messages(session=session, limit=3)

    assert [m.pk for m in transcript] == [m.pk for m in expected]
    assert [(m.role, m.body) for m in transcript] == [
        ("assistant", "Answer 3"),
        ("customer", "Question 4"),
        ("assistant", "Answer 4"),
    ]
    assert transcript[-1].tool_calls == [
        {"text": "", "calls": [], "results": [], "n": 4}
    ]
    # Only what a transcript needs is read; the rest is deferred, as with only().
    assert transcript[0].get_deferred_fields() >= {"data", "author_id", "cost"}


def _booking(lead, starts_at, status="booked", name="Ceramic tint"):
    return Appointment.objects.create(
        lead=lead, location=lead.location, service=ServiceCatalogItemFactory(name=name),
        bay=1, starts_at=starts_at, ends_at=starts_at + timedelta(hours=2),
        status=status, source="chat", price_cents=44900,
    )  # fmt: skip


def test_the_context_names_the_leads_booked_appointment_only(tenant):
    lead, other = LeadFactory(), LeadFactory()
    start = datetime(2026, 12, 8, 17, tzinfo=UTC)
    _booking(lead, start - timedelta(days=3), status="cancelled", name="Old")
    _booking(other, start - timedelta(days=1), name="Not theirs")
    booked = _booking(lead, start)
    session = chat_services.session_get_with_lead(
        session_id=chat_services.session_for_lead(lead=lead).pk
    )

    appointment = context_load(session=session).appointment

    assert appointment is not None
    assert (appointment.id, appointment.service) == (booked.pk, "Ceramic tint")
    assert appointment.starts_at == start
    other_session = chat_services.session_for_lead(lead=LeadFactory())
    assert context_load(session=other_session).appointment is None


def test_outside_a_transaction_a_resend_stores_nothing_and_the_totals_stay(tenant_tx):
    # Not inside a test transaction: later messages are one statement in autocommit.
    session = chat_services.session_for_lead(lead=LeadFactory())
    chat_services.customer_message_post(session=session, text="Hi", client_id="a")
    session.refresh_from_db()
    second = chat_services.customer_message_post(
        session=session, text="Price for an SUV?", client_id="b"
    )
    before = ChatSession.objects.get(pk=session.pk)

    again = chat_services.customer_message_post(
        session=before, text="Price for an SUV?", client_id="b"
    )

    assert connection.get_autocommit()
    assert second.created
    assert not again.created
    assert again.message.pk == second.message.pk
    after = ChatSession.objects.get(pk=session.pk)
    assert after.customer_messages == before.customer_messages == 2
    assert after.last_message_at == before.last_message_at
    assert ChatMessage.objects.filter(session=session).count() == 2


def test_outside_a_transaction_the_first_message_and_its_effects_are_one_statement(
    tenant_tx,
):
    lead = LeadFactory()
    touchpoint_services.cadence_start(lead=lead)
    session = chat_services.session_for_lead(lead=lead)
    stale = ChatSession.objects.select_related("lead").get(pk=session.pk)
    other_tab = ChatSession.objects.select_related("lead").get(pk=session.pk)

    with CaptureQueriesContext(connection) as queries:
        first = chat_services.customer_message_post(
            session=session, text="Hi", client_id="a"
        )
    # A resend of it, and another tab's first message, from sessions read before it
    # was stored: each believes it is the first.
    resent = chat_services.customer_message_post(
        session=stale, text="Hi", client_id="a"
    )
    other = chat_services.customer_message_post(
        session=other_tab, text="Hello?", client_id="b"
    )

    assert connection.get_autocommit()
    assert [q["sql"].split(" ", 3)[:3] for q in queries] == [["WITH", "totals", "AS"]]
    assert (first.created, other.created, resent.created) == (True, True, False)
    assert resent.message.pk == first.message.pk
    assert session.lead.status == LeadStatus.ENGAGED
    stored = Lead.objects.get(pk=lead.pk)
    assert stored.status == LeadStatus.ENGAGED
    assert stored.events.filter(to_status=LeadStatus.ENGAGED).count() == 1
    assert not TouchPoint.objects.filter(
        lead=lead, status__in=OPEN_TOUCHPOINT_STATUSES
    ).exists()
    assert ChatSession.objects.get(pk=session.pk).customer_messages == 2


def test_a_batch_returns_each_statements_rows_in_order_and_values_as_data(tenant):
    hostile = "x'; DELETE FROM chat_chatmessage; --%s"
    rows = sql.fetch_batch(
        [
            sql.Statement("SELECT n FROM generate_series(1, %s) n", [3]),
            sql.Statement("SELECT 1 WHERE %s", [False]),
            sql.Statement("SELECT %s::text, %s::int", [hostile, 7]),
        ]
    )

    assert rows == [[(1,), (2,), (3,)], [], [(hostile, 7)]]


def test_reads_inside_a_statement_give_the_row_each_found(tenant):
    hostile = "x'; DELETE FROM chat_chatmessage; --%s"
    reads = [
        sql.RowRead("SELECT %s::int, %s::text", [7, hostile], width=2),
        sql.RowRead("SELECT 1 WHERE %s", [False], width=1),
        sql.RowRead("SELECT n, n * 2, NULL FROM generate_series(3, 3) n", [], width=3),
    ]
    columns, joins, params = sql.reads_joined(reads)

    row = sql.fetch_one(
        sql.Statement(
            f"SELECT %s::int, {columns} FROM (SELECT 1) s {joins}",  # noqa: S608 - the reads above
            [0, *params],
        )
    )

    assert row is not None
    assert sql.reads_split(row, 1, reads) == [(7, hostile), None, (3, 6, None)]
    with pytest.raises(ValueError, match="columns"):
        sql.reads_split(row, 0, reads)


@pytest.fixture
def facts_cached(settings):
    # Warm caches as in production; the test's entries go with it.
    settings.CHAT_CONTEXT_CACHE_SECONDS = settings.AI_SPEND_CACHE_SECONDS = 60
    cache.clear()
    yield
    cache.clear()


def _kept_turn(session, text, kept):
    return ai_service.customer_turn_start(
        session_id=session.pk, text=text, client_id="", channel="web", kept=kept
    )


def _kept_turn_counted(session, text, kept):
    """The turn, and the statements it sent."""
    with CaptureQueriesContext(connection) as queries:
        turn = _kept_turn(session, text, kept)
    return turn, _statements(queries)


def _statements(queries) -> list[str]:
    # Inside a caller's transaction (the test's) the store has a savepoint around it.
    return [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"].split(" ", 2)[:2]]


def _answered(turn, body):
    """The socket's side of an answer: stored, and added to what it keeps."""
    answer = chat_services.assistant_message_store(
        session=turn.posted.message.session, body=body, channel="web"
    )
    return turn.kept.with_message(answer)


def _assert_answers_as_read_afresh(session, turn, booked):
    """The turn (its question "How much?" after "Hi" and its answer) answers from
    what a read after the message was stored finds."""
    assert turn.prepared is not None
    assert turn.prepared.transcript == (
        UserText("Hi"),
        AssistantText("Hello! How can I help?"),
        UserText("How much?"),
    )
    assert f"has an appointment: {booked.service.name} on" in turn.prepared.system
    reread = ai_service._prepare(
        session_id=session.pk,
        customer_message_id=turn.posted.message.pk,
        channel="web",
        confirmed_by_customer=False,
    )
    assert reread is not None
    assert (reread.system, reread.transcript, reread.binding) == (
        turn.prepared.system,
        turn.prepared.transcript,
        turn.prepared.binding,
    )


def test_a_later_turn_reads_once_and_stores_once_and_answers_from_the_same_facts(
    session, facts_cached
):
    booked = _booking(session.lead, datetime(2026, 12, 8, 17, tzinfo=UTC))
    first = ai_service.customer_turn_start(
        session_id=session.pk, text="Hi", client_id="c-1", channel="web"
    )
    chat_services.assistant_message_store(
        session=session, body="Hello! How can I help?", channel="web"
    )

    with CaptureQueriesContext(connection) as queries:
        turn = ai_service.customer_turn_start(
            session_id=session.pk, text="How much?", client_id="c-2", channel="web"
        )

    # The read and the store; the savepoint around the store is only there inside
    # a caller's transaction, as in this test.
    statements = _statements(queries)
    assert len(statements) == 2, statements
    assert statements[1].startswith("WITH totals AS (UPDATE")
    assert first.prepared is not None
    _assert_answers_as_read_afresh(session, turn, booked)


def test_a_turn_sees_only_the_newest_messages_with_its_own_last(session, settings):
    settings.AI_HISTORY_MESSAGES = 3
    for n in range(3):
        chat_services.customer_message_post(session=session, text=f"Question {n}")

    turn = ai_service.customer_turn_start(
        session_id=session.pk, text="Last one", client_id="", channel="web"
    )

    assert turn.prepared is not None
    assert turn.prepared.transcript == (
        UserText("Question 1"),
        UserText("Question 2"),
        UserText("Last one"),
    )


def test_the_first_message_engages_the_lead_and_stops_its_cadence_in_one_statement(
    session, facts_cached
):
    touchpoint_services.cadence_start(lead=session.lead)
    # A caller's transaction (this test's) gets one savepoint around the store, the
    # lead's move and the cadence's stop, which are one statement.
    with CaptureQueriesContext(connection) as queries:
        turn = ai_service.customer_turn_start(
            session_id=session.pk, text="Hi", client_id="c-1", channel="web"
        )

    statements = [q["sql"] for q in queries]
    stored = next(
        i for i, s in enumerate(statements) if s.startswith("WITH totals AS (UPDATE")
    )
    assert statements[stored - 1].startswith("SAVEPOINT")
    assert statements[stored + 1].startswith("RELEASE SAVEPOINT")
    assert stored == 2, statements[:stored]  # the turn's one read before it
    steps = re.findall(
        r"(\w+) AS \((SELECT|UPDATE|INSERT INTO) (\S+)", statements[stored]
    )
    assert steps == [
        ("totals", "UPDATE", '"chat_chatsession"'),
        ("message", "INSERT INTO", '"chat_chatmessage"'),
        ("earlier", "SELECT", "count(*)"),
        ("lead_before", "SELECT", '"id",'),
        ("lead_moved", "UPDATE", '"leads_lead"'),
        ("lead_event", "INSERT INTO", '"leads_leadevent"'),
        ("cadence_stopped", "UPDATE", '"touchpoints_cadenceenrollment"'),
        ("cadence_cancelled", "UPDATE", '"touchpoints_touchpoint"'),
    ]
    # The session's lead, as the turn holds it, is the lead as stored.
    assert turn.posted.message.session.lead.status == LeadStatus.ENGAGED

    lead = Lead.objects.get(pk=session.lead_id)
    assert lead.status == LeadStatus.ENGAGED
    assert lead.events.filter(to_status=LeadStatus.ENGAGED).count() == 1
    enrollment = CadenceEnrollment.objects.get(lead=lead)
    assert enrollment.stop_reason == StopReason.CHATTED
    assert not TouchPoint.objects.filter(
        lead=lead, status__in=OPEN_TOUCHPOINT_STATUSES
    ).exists()
    assert turn.prepared is not None


def test_messages_sent_at_once_are_counted_one_after_the_other(tenant_tx, settings):
    # Twelve messages of one conversation at the same moment (tabs, resends, a
    # script), each from the session as read before any was stored: the rate limit
    # lets exactly its number through, and the lead moves once.
    settings.CHAT_RATE_MESSAGES = 5
    lead = LeadFactory()
    touchpoint_services.cadence_start(lead=lead)
    session = chat_services.session_for_lead(lead=lead)
    outcomes: list = [None] * 12
    barrier = threading.Barrier(12)

    def post(index: int) -> None:
        try:
            with tenant_context(tenant_tx):
                stale = ChatSession.objects.select_related("lead").get(pk=session.pk)
                barrier.wait()
                try:
                    posted = chat_services.customer_message_post(
                        session=stale, text=f"Hello {index}", client_id=f"c-{index}"
                    )
                    outcomes[index] = posted.created
                except chat_services.RateLimitedError:
                    outcomes[index] = "limited"
        except Exception as error:  # any other exception fails the test below
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes, key=str) == [True] * 5 + ["limited"] * 7
    stored = ChatSession.objects.get(pk=session.pk)
    assert (stored.customer_messages, stored.rate_window_messages) == (5, 5)
    assert ChatMessage.objects.filter(session=session).count() == 5
    lead.refresh_from_db()
    assert lead.status == LeadStatus.ENGAGED
    assert lead.events.filter(to_status=LeadStatus.ENGAGED).count() == 1
    assert not TouchPoint.objects.filter(
        lead=lead, status__in=OPEN_TOUCHPOINT_STATUSES
    ).exists()


def test_a_turn_reads_its_cached_facts_in_one_read_of_the_cache(
    session, catalog, facts_cached, monkeypatch, django_capture_on_commit_callbacks
):
    # The first turn reads the brand's and the location's facts and the day's spend
    # from the database, once each, and keeps them.
    with CaptureQueriesContext(connection) as cold:
        ai_service.customer_turn_start(
            session_id=session.pk, text="Hi", client_id="c-1", channel="web"
        )
    tenants = f'FROM "{Tenant._meta.db_table}"'
    assert sum(tenants in q["sql"] for q in cold) == 1
    reads = []
    backend = type(caches["default"])
    original_get, original_get_many = backend.get, backend.get_many
    inside = []

    def get(self, *args, **kwargs):
        if not inside:  # the local memory cache's get_many reads each key with get
            reads.append("get")
        return original_get(self, *args, **kwargs)

    def get_many(self, *args, **kwargs):
        reads.append("get_many")
        inside.append(True)
        try:
            return original_get_many(self, *args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(backend, "get", get)
    monkeypatch.setattr(backend, "get_many", get_many)

    with CaptureQueriesContext(connection) as queries:
        turn = ai_service.customer_turn_start(
            session_id=session.pk, text="How much?", client_id="c-2", channel="web"
        )

    assert reads == ["get_many"]
    # The turn's read and its store (in this test's transaction, with a savepoint
    # around the store): none of the facts.
    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 2, statements
    assert "Windshield tint" in turn.prepared.system
    assert "$199.00" in turn.prepared.system
    # A change to the catalog reaches the next turn through the same read.
    with django_capture_on_commit_callbacks(execute=True):
        windshield = catalog[1]
        windshield.price_cents = 21900
        windshield.save()
    turn = ai_service.customer_turn_start(
        session_id=session.pk, text="And now?", client_id="c-3", channel="web"
    )
    assert "$219.00" in turn.prepared.system
    assert reads == ["get_many", "get_many"]


def test_a_turn_from_what_the_socket_kept_is_one_statement_and_reads_as_a_fresh_turn(
    session, facts_cached
):
    booked = _booking(session.lead, datetime(2026, 12, 8, 17, tzinfo=UTC))
    first = _kept_turn(session, "Hi", None)
    kept = _answered(first, "Hello! How can I help?")

    turn, statements = _kept_turn_counted(session, "How much?", kept)

    assert len(statements) == 1, statements
    assert statements[0].startswith("WITH totals AS (UPDATE")
    _assert_answers_as_read_afresh(session, turn, booked)
    assert turn.kept.messages == ChatMessage.objects.filter(session=session).count()
    assert _values(turn.prepared.session) == _values(
        ChatSession.objects.get(pk=session.pk)
    )


def test_what_changed_since_the_kept_turn_reaches_the_next_one(session, facts_cached):
    first = _kept_turn(session, "Hi", None)
    kept = _answered(first, "Hello! How can I help?")
    # Meanwhile: another tab writes, the shop books the customer in, the CRM updates
    # the vehicle and the store's name changes.
    chat_services.customer_message_post(
        session=ChatSession.objects.get(pk=session.pk), text="From my laptop"
    )
    booked = _booking(session.lead, datetime(2026, 12, 9, 17, tzinfo=UTC))
    Lead.objects.filter(pk=session.lead_id).update(
        vehicle_year=2024, vehicle_make="Rivian", vehicle_model="R1S"
    )
    Location.objects.filter(pk=session.lead.location_id).update(name="Store 94 East")

    turn, statements = _kept_turn_counted(session, "And now?", kept)

    # The statement, then the transcript read again for the message it lacked.
    assert len(statements) == 2
    assert turn.prepared is not None
    assert turn.prepared.transcript == (
        UserText("Hi"),
        AssistantText("Hello! How can I help?"),
        UserText("From my laptop"),
        UserText("And now?"),
    )
    system = turn.prepared.system
    assert "2024 Rivian R1S" in system
    assert "Store 94 East" in system
    assert f"has an appointment: {booked.service.name} on" in system
    assert turn.kept.messages == 4
    # The next turn from what this one kept needs no second read.
    kept = _answered(turn, "You're booked.")
    _, statements = _kept_turn_counted(session, "Thanks", kept)
    assert len(statements) == 1


def test_a_message_stored_late_under_a_lower_id_is_noticed_by_the_count(
    session, facts_cached
):
    first = _kept_turn(session, "Hi", None)
    # A gap in the ids, as when a message's transaction commits after a later one's.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
            [ChatMessage._meta.db_table, first.posted.message.pk + 50],
        )
    kept = _answered(first, "Hello!")
    late = ChatMessage.objects.create(
        pk=first.posted.message.pk + 10,
        session=session,
        role="staff",
        body="Hi Maria, this is Sam from the shop.",
    )

    turn = _kept_turn(session, "Hi Sam", kept)

    assert turn.prepared is not None
    assert [m.pk for m in turn.kept.history] == sorted(
        ChatMessage.objects.filter(session=session).values_list("pk", flat=True)
    )
    assert late.pk in [m.pk for m in turn.kept.history]


def test_a_kept_session_turned_over_or_closed_since_is_judged_as_it_stands(
    session, facts_cached
):
    first = _kept_turn(session, "Hi", None)
    kept = _answered(first, "Hello!")
    ChatSession.objects.filter(pk=session.pk).update(mode="human")

    turn = _kept_turn(session, "Can a person call me?", kept)

    # Stored, and left to staff: the assistant does not answer.
    assert turn.posted.created
    assert turn.prepared is None
    ChatSession.objects.filter(pk=session.pk).update(revoked_at=timezone.now())
    stored = ChatMessage.objects.filter(session=session).count()
    with pytest.raises(chat_services.ConversationClosedError):
        _kept_turn(session, "Hello?", turn.kept)
    assert ChatMessage.objects.filter(session=session).count() == stored
    ChatSession.objects.filter(pk=session.pk).delete()
    with pytest.raises(chat_services.ConversationClosedError):
        _kept_turn(session, "Anyone?", turn.kept)


def test_what_a_socket_keeps_takes_each_message_once_in_order(session, settings):
    settings.AI_HISTORY_MESSAGES = 3
    messages = [
        chat_services.customer_message_post(session=session, text=f"Q{n}").message
        for n in range(4)
    ]
    kept = ai_service.Kept(session=session, history=messages[:1], messages=1)

    kept = kept.with_message(messages[2]).with_message(messages[1])
    assert [m.body for m in kept.history] == ["Q0", "Q1", "Q2"]
    assert kept.with_message(messages[1]) is kept
    kept = kept.with_message(messages[3])
    assert ([m.body for m in kept.history], kept.messages) == (["Q1", "Q2", "Q3"], 4)


def test_what_a_socket_keeps_holds_no_stale_session_and_no_cycle(session, facts_cached):
    """Each turn reads the session afresh: a kept message does not keep the session it
    was stored with, and that session's lead and location, alive with the socket."""
    first = _kept_turn(session, "Hi", None)
    kept = _answered(first, "Hello!")
    turn = _kept_turn(session, "How much?", kept)

    cached = ChatMessage.session.field.is_cached
    assert [m.body for m in turn.kept.history] == ["Hi", "Hello!", "How much?"]
    assert [cached(m) for m in turn.kept.history] == [False, False, False]
    # The message the turn stored, as its caller gets it, keeps its session.
    assert cached(turn.posted.message)
    assert turn.posted.message.session.lead.first_name == session.lead.first_name
    # The session read knows its lead, and the lead is not told of the session: no
    # cycle between them to wait for the garbage collector.
    kept_session = turn.kept.session
    assert ChatSession.lead.field.is_cached(kept_session)
    assert not Lead.chat_session.related.is_cached(kept_session.lead)


def test_a_socket_keeps_what_its_page_opened_with_when_it_is_all(session, facts_cached):
    first = _kept_turn(session, "Hi", None)
    chat_services.assistant_message_store(session=session, body="Hello!", channel="web")
    opened = chat_services.messages_after(session=session)
    kept = ai_service.kept_from_page(session=session, messages=opened)
    assert kept is not None

    turn, statements = _kept_turn_counted(session, "How much?", kept)

    assert len(statements) == 1
    assert turn.prepared is not None
    assert turn.prepared.transcript == (
        UserText("Hi"),
        AssistantText("Hello!"),
        UserText("How much?"),
    )
    assert turn.posted.message.pk > first.posted.message.pk
    # A page that may not hold every message keeps nothing: the turn reads.
    full_page = [opened[0]] * chat_services.MESSAGES_PAGE
    assert ai_service.kept_from_page(session=session, messages=full_page) is None
