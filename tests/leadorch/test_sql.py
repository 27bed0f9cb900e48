"""Hand-written SQL from the models' fields (leadorch.sql)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from chat.models import ChatLink, ChatSession
from leadorch import sql
from tests.factories import LeadFactory, LocationFactory


def prepared(text: str) -> int:
    """How many statements with this text are prepared on the connection."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = %s", [text]
        )
        return cursor.fetchone()[0]


def test_an_insert_applies_defaults_and_auto_now_add_and_reads_back(tenant):
    session = ChatSession.objects.create(lead=LeadFactory())
    link = ChatLink(
        session=session, token_hash="h" * 64, expires_at=timezone.now() + timedelta(1)
    )
    assert link.created_at is None

    insert = sql.insert_values(link)
    with connection.cursor() as cursor:
        cursor.execute(f"{insert.sql} RETURNING id", insert.params)
        (pk,) = cursor.fetchone()
    sql.mark_saved(link, pk)

    assert link.created_at is not None  # auto_now_add, as save() sets it
    stored = ChatLink.objects.get(pk=pk)
    assert (stored.session_id, stored.token_hash) == (session.pk, "h" * 64)
    assert stored.created_at == link.created_at
    assert stored.expires_at == link.expires_at
    assert not link._state.adding


def test_assignments_set_prepared_values_and_increment(tenant):
    session = ChatSession.objects.create(lead=LeadFactory(), customer_messages=4)
    assignments, params = sql.update_assignments(
        ChatSession,
        {"offered_slots": [{"id": "S1"}], "mode": "human"},
        increments={"customer_messages": 3},
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE chat_chatsession SET {assignments} WHERE id = %s",  # noqa: S608 - the test's own table
            [*params, session.pk],
        )

    stored = ChatSession.objects.get(pk=session.pk)
    assert stored.offered_slots == [{"id": "S1"}]
    assert stored.mode == "human"
    assert stored.customer_messages == 7


def test_a_row_becomes_the_instance_the_orm_would_load(tenant):
    session = ChatSession.objects.create(
        lead=LeadFactory(), offered_slots=[{"id": "S2", "label": "Wed"}]
    )
    columns = sql.model_columns(ChatSession)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns.select('s')} FROM chat_chatsession s WHERE s.id = %s",  # noqa: S608 - the test's own table
            [session.pk],
        )
        row = cursor.fetchone()

    loaded = columns.instance(row)
    expected = ChatSession.objects.get(pk=session.pk)
    for field in ChatSession._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(expected, field.attname)
    assert loaded.offered_slots == [{"id": "S2", "label": "Wed"}]  # JSON decoded
    assert len(columns) == len(ChatSession._meta.concrete_fields)


def test_named_columns_come_in_the_models_order_whatever_order_they_are_named(tenant):
    session = ChatSession.objects.create(lead=LeadFactory(), mode="human")
    columns = sql.model_columns(ChatSession, ("mode", "lead", "id"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns.select('s')} FROM chat_chatsession s WHERE id = %s",  # noqa: S608 - the model's columns
            [session.pk],
        )
        built = columns.instance(cursor.fetchone())

    assert (built.pk, built.lead_id, built.mode) == (
        session.pk,
        session.lead_id,
        "human",
    )


def test_steps_run_as_one_statement_and_their_names_must_differ(tenant):
    session = ChatSession.objects.create(lead=LeadFactory())
    mode = sql.column(ChatSession, "mode")
    steps = [
        sql.Step(
            "changed",
            f"UPDATE chat_chatsession SET {mode} = %s WHERE id = %s RETURNING id",  # noqa: S608 - a quoted column
            ["human", session.pk],
        ),
        sql.Step("none", "SELECT 1 WHERE %s", [False]),
    ]

    assert sql.fetch_one(
        sql.with_steps(steps, "SELECT count(*) FROM changed, (SELECT %s) x", [1])
    ) == (1,)
    assert ChatSession.objects.get(pk=session.pk).mode == "human"
    with pytest.raises(ValueError, match="changed"):
        sql.with_steps([*steps, steps[0]], "SELECT 1")


def test_fetch_one_prepares_its_statement_once_on_the_connection(tenant):
    statement = sql.Statement("SELECT %s::int + 1 AS prepared_once", [1])

    rows = [sql.fetch_one(statement), sql.fetch_one(statement)]

    assert rows == [(2,), (2,)]
    assert prepared("SELECT $1::int + 1 AS prepared_once") == 1


def test_a_prepared_statement_runs_in_the_schema_of_each_call(tenant, other_tenant):
    """Prepared in one brand's schema, the statement reads and writes the tables of
    the brand whose schema is set when it runs, however often the schema changes."""
    location = LocationFactory(name="Only in alpha")
    touch = sql.Statement(
        'UPDATE "locations_location" SET "name" = "name" WHERE "name" = %s '
        'RETURNING "id"',
        ["Only in alpha"],
    )

    seen = []
    for _ in range(3):
        seen.append(sql.fetch_one(touch))
        with tenant_context(other_tenant):
            seen.append(sql.fetch_one(touch))

    assert seen == [(location.pk,), None] * 3
    assert prepared(touch.sql.replace("%s", "$1")) == 1


def test_without_prepared_statements_the_values_are_bound_on_the_client(
    tenant, monkeypatch
):
    connection.ensure_connection()
    monkeypatch.setattr(connection.connection, "prepare_threshold", None)
    statement = sql.Statement("SELECT %s::int + 1 AS bound_on_the_client", [41])

    assert sql.fetch_one(statement) == (42,)
    assert prepared("SELECT $1::int + 1 AS bound_on_the_client") == 0
