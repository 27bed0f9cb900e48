"""Hand-written SQL from the models' fields (leadorch.sql)."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from chat.models import ChatLink, ChatSession
from leadorch import sql
from tests.factories import LeadFactory


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
