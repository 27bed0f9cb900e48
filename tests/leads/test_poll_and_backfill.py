"""Polling and backfill: every page, rows re-checked in code, a cursor that moves only after success."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from leads import intake
from leads.models import (
    CRMConnection,
    IgnoredOrder,
    JobExecution,
    JobKind,
    JobStatus,
    Lead,
    LeadSource,
)
from tests.leads.conftest import make_connection, order_row

T0 = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _pages(*pages: list[dict]) -> list[dict]:
    return [
        {
            "success": True,
            "data": rows,
            "meta": {
                "total": sum(len(p) for p in pages),
                "hasMore": index < len(pages) - 1,
            },
        }
        for index, rows in enumerate(pages)
    ]


def _paged_by_skip(pages: list[dict]):
    offsets, position = {}, 0
    for page in pages:
        offsets[position] = page
        position += len(page["data"])

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=offsets[int(request.url.params["skip"])])

    return answer


def test_poll_walks_every_page_and_advances_the_cursor(crm, shopmonkey):
    # given: three lead orders and one repair order across two pages
    crm.poll_cursor = T0
    crm.save()
    rows = [order_row(updatedDate=_stamp(T0 + timedelta(minutes=m))) for m in (1, 2, 3)]
    rows.append(
        order_row(status="RepairOrder", updatedDate=_stamp(T0 + timedelta(minutes=4)))
    )
    shopmonkey.list_route.mock(side_effect=_paged_by_skip(_pages(rows[:2], rows[2:])))

    # when
    job = intake.connection_poll(connection=crm)

    # then
    assert (
        job.status,
        job.kind,
        job.pages,
        job.orders_seen,
        job.leads_created,
        job.errors,
    ) == (
        JobStatus.SUCCEEDED,
        JobKind.POLL,
        2,
        4,
        3,
        0,
    )
    assert job.cursor_before == T0
    assert job.cursor_after == T0 + timedelta(minutes=4)
    crm.refresh_from_db()
    assert crm.poll_cursor == T0 + timedelta(minutes=4)
    assert crm.poll_locked_until is None
    assert set(Lead.objects.values_list("source", flat=True)) == {LeadSource.POLL}
    assert Lead.objects.count() == 3
    request = shopmonkey.list_route.calls[0].request
    assert (
        request.url.params["where"]
        == '{"updatedDate":{"gte":"2026-09-24T11:58:00.000Z"}}'
    )  # cursor minus overlap
    assert request.url.params["orderby"] == '{"updatedDate":"asc"}'


def test_poll_rechecks_rows_the_api_should_have_filtered(crm, shopmonkey):
    """The API silently ignores a filter it does not understand and returns the whole table."""
    crm.poll_cursor = T0
    crm.save()
    old = order_row(updatedDate=_stamp(T0 - timedelta(days=3)))
    new = order_row(updatedDate=_stamp(T0 + timedelta(minutes=1)))
    shopmonkey.list_route.mock(side_effect=_paged_by_skip(_pages([old, new])))

    job = intake.connection_poll(connection=crm)

    assert job.orders_seen == 1
    assert list(Lead.objects.values_list("crm_order_id", flat=True)) == [new["id"]]


def test_cursor_stays_when_an_order_fails(crm, shopmonkey):
    crm.poll_cursor = T0
    crm.save()
    rows = [order_row(updatedDate=_stamp(T0 + timedelta(minutes=1)))]
    shopmonkey.list_route.mock(side_effect=_paged_by_skip(_pages(rows)))
    shopmonkey.customer_route.mock(
        return_value=httpx.Response(404, json={"success": False, "message": "gone"})
    )

    job = intake.connection_poll(connection=crm)

    assert (job.status, job.errors, job.leads_created) == (JobStatus.FAILED, 1, 0)
    assert "order " + rows[0]["id"] in job.error_detail
    crm.refresh_from_db()
    assert crm.poll_cursor == T0
    assert "HTTP 404" in crm.last_poll_error


def test_cursor_stays_when_the_api_is_down_and_the_next_poll_catches_up(
    crm, shopmonkey, monkeypatch
):
    monkeypatch.setattr("leads.shopmonkey.time.sleep", lambda seconds: None)
    crm.poll_cursor = T0
    crm.save()
    row = order_row(updatedDate=_stamp(T0 + timedelta(minutes=1)))
    shopmonkey.list_route.mock(
        return_value=httpx.Response(
            503, json={"success": False, "message": "maintenance"}
        )
    )

    down = intake.connection_poll(connection=crm)

    crm.refresh_from_db()
    assert (down.status, crm.poll_cursor, Lead.objects.count()) == (
        JobStatus.FAILED,
        T0,
        0,
    )
    # when the API is back, nothing was missed
    shopmonkey.list_route.mock(side_effect=_paged_by_skip(_pages([row])))
    back = intake.connection_poll(connection=crm)
    assert (back.status, back.leads_created) == (JobStatus.SUCCEEDED, 1)
    crm.refresh_from_db()
    assert crm.poll_cursor == T0 + timedelta(minutes=1)


def test_a_second_poll_of_the_same_connection_waits_its_turn(crm, shopmonkey):
    assert intake.connection_poll_claim(connection_id=crm.pk)
    assert intake.connection_poll(connection=crm) is None
    assert not JobExecution.objects.exists()


def test_first_poll_looks_back_a_day(crm, shopmonkey, settings):
    settings.POLL_INITIAL_LOOKBACK_HOURS = 24
    job = intake.connection_poll(connection=crm)
    assert timezone.now() - job.cursor_before == pytest.approx(
        timedelta(hours=24), abs=timedelta(seconds=30)
    )


def test_dispatcher_queues_each_due_connection_once_per_interval(
    tenant, store, settings
):
    settings.POLL_INTERVAL_SECONDS = 30
    due = make_connection(name="due")
    make_connection(name="no key", api_key="")
    make_connection(name="off", poll_enabled=False)

    first = list(intake.connections_due_for_poll())
    second = list(intake.connections_due_for_poll())

    assert first == [due.pk]
    assert second == []
    due.refresh_from_db()
    assert due.next_poll_at > timezone.now() + timedelta(seconds=25)


def test_poll_command_prints_a_summary(crm, shopmonkey, tenant):
    crm.poll_cursor = T0
    crm.save()
    out = StringIO()
    call_command("poll_shopmonkey", tenant="alpha", stdout=out)
    assert (
        "alpha / ShopMonkey: Succeeded - 1 page(s), 1 order(s) seen, 1 lead(s) created"
        in out.getvalue()
    )
    assert Lead.objects.count() == 1


def test_poll_command_refuses_an_unknown_brand(db):
    with pytest.raises(CommandError, match="No brand has the slug 'nope'"):
        call_command("poll_shopmonkey", tenant="nope")


# --- backfill ---------------------------------------------------------------------------------


def _created_rows(count: int) -> list[dict]:
    return [
        order_row(
            createdDate=_stamp(T0 + timedelta(hours=i)),
            orderCreatedDate=_stamp(T0 + timedelta(hours=i)),
        )
        for i in range(count)
    ]


def test_backfill_creates_leads_in_the_window(crm, shopmonkey, tenant):
    rows = [
        *_created_rows(3),
        order_row(
            createdDate=_stamp(T0 + timedelta(days=5)),
            orderCreatedDate=_stamp(T0 + timedelta(days=5)),
        ),
    ]
    shopmonkey.list_route.mock(side_effect=_paged_by_skip(_pages(rows[:2], rows[2:])))
    out, err = StringIO(), StringIO()

    call_command(
        "backfill_leads",
        tenant="alpha",
        since="2026-09-24",
        until="2026-09-25",
        stdout=out,
        stderr=err,
    )

    assert Lead.objects.count() == 3  # the fourth order is outside the window
    assert set(Lead.objects.values_list("source", flat=True)) == {LeadSource.BACKFILL}
    assert "4 order(s) seen" not in out.getvalue()
    assert "3 order(s) seen on 2 page(s), 3 lead(s) created" in out.getvalue()
    job = JobExecution.objects.get(kind=JobKind.BACKFILL)
    assert job.status == JobStatus.SUCCEEDED
    assert job.params == {
        "since": "2026-09-24T00:00:00+00:00",
        "until": "2026-09-26T00:00:00+00:00",
    }
    where = shopmonkey.list_route.calls[0].request.url.params["where"]
    assert (
        where
        == '{"createdDate":{"gte":"2026-09-24T00:00:00.000Z","lt":"2026-09-26T00:00:00.000Z"}}'
    )


def test_backfill_dry_run_writes_nothing(crm, shopmonkey, tenant):
    shopmonkey.list_route.mock(side_effect=_paged_by_skip(_pages(_created_rows(2))))
    out = StringIO()

    call_command(
        "backfill_leads",
        tenant="alpha",
        since="2026-09-24",
        until="2026-09-25",
        dry_run=True,
        stdout=out,
        stderr=StringIO(),
    )

    assert "2 lead(s) would be created" in out.getvalue()
    assert not Lead.objects.exists()
    assert not IgnoredOrder.objects.exists()


def test_backfill_resumes_after_an_interruption(crm, shopmonkey, tenant):
    rows = _created_rows(4)
    pages = _pages(rows[:2], rows[2:])
    calls = {"n": 0}

    def interrupt_on_second_page(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return _paged_by_skip(pages)(request)

    shopmonkey.list_route.mock(side_effect=interrupt_on_second_page)
    with pytest.raises(CommandError, match="Run the same command again to resume"):
        call_command(
            "backfill_leads",
            tenant="alpha",
            since="2026-09-24",
            until="2026-09-25",
            stdout=StringIO(),
            stderr=StringIO(),
        )
    job = JobExecution.objects.get(kind=JobKind.BACKFILL)
    assert job.status == JobStatus.INTERRUPTED
    assert job.progress == {"cursor": (T0 + timedelta(hours=1)).isoformat()}
    assert Lead.objects.count() == 2

    # when: run again; the API now answers from the saved cursor on
    remaining = [r for r in rows if r["createdDate"] >= _stamp(T0 + timedelta(hours=1))]
    shopmonkey.list_route.mock(side_effect=_paged_by_skip(_pages(remaining)))
    out = StringIO()
    call_command(
        "backfill_leads",
        tenant="alpha",
        since="2026-09-24",
        until="2026-09-25",
        stdout=out,
        stderr=StringIO(),
    )

    # then
    assert "Resuming the run" in out.getvalue()
    assert Lead.objects.count() == 4
    assert JobExecution.objects.filter(kind=JobKind.BACKFILL).count() == 1
    assert JobExecution.objects.get(kind=JobKind.BACKFILL).status == JobStatus.SUCCEEDED
    assert "createdDate" in shopmonkey.list_route.calls[-1].request.url.params["where"]
    assert (
        _stamp(T0 + timedelta(hours=1))
        in shopmonkey.list_route.calls[-1].request.url.params["where"]
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"since": "yesterday"}, "is not a date"),
        ({"since": "2026-09-25", "until": "2026-09-20"}, "must not be before"),
    ],
)
def test_backfill_refuses_bad_dates(crm, tenant, options, message):
    with pytest.raises(CommandError, match=message):
        call_command("backfill_leads", tenant="alpha", **options)


def test_backfill_needs_a_connection_with_a_key(tenant, store):
    make_connection(api_key="")
    with pytest.raises(CommandError, match="has no active connection with an API key"):
        call_command("backfill_leads", tenant="alpha", since="2026-09-24")


def test_secrets_are_encrypted_at_rest(crm):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_key, webhook_secret FROM leads_crmconnection WHERE id = %s",
            [crm.pk],
        )
        api_key, secret = cursor.fetchone()
    assert api_key.startswith("fernet:")
    assert "sk-test" not in api_key
    assert "whsec_" not in secret
    assert CRMConnection.objects.get(pk=crm.pk).api_key == "sk-test"
