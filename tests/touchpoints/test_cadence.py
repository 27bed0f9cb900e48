"""The cadence as data: the default 13 steps, templates checked when saved, starting and stopping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from leadorch.errors import ApplicationError
from leads.models import LeadStatus
from messaging.models import Channel, OutboundMessage
from tests.touchpoints.conftest import DAYTIME
from touchpoints import services
from touchpoints.models import (
    Cadence,
    CadenceEnrollment,
    CadenceStep,
    EnrollmentStatus,
    TouchPoint,
    TouchPointStatus,
)


def test_default_cadence_has_13_steps_over_about_30_days(tenant):
    cadence = services.cadence_default_ensure()

    steps = list(cadence.steps.order_by("position"))
    assert len(steps) == 13
    assert [s.position for s in steps] == list(range(1, 14))
    assert {s.channel for s in steps} == {Channel.SMS, Channel.EMAIL}
    assert {(s.channel, s.delay_minutes) for s in steps[:2]} == {
        (Channel.SMS, 0),
        (Channel.EMAIL, 0),
    }
    assert steps[-1].delay_minutes == 30 * 24 * 60
    assert [s.delay_minutes for s in steps] == sorted(s.delay_minutes for s in steps)
    for step in steps:
        step.full_clean()  # every default template renders
    assert services.cadence_default_ensure() == cadence
    assert Cadence.objects.count() == 1


def test_a_template_that_does_not_render_is_refused_when_saved(tenant):
    cadence = services.cadence_default_ensure()
    broken = CadenceStep(
        cadence=cadence,
        position=14,
        channel=Channel.SMS,
        delay_minutes=60,
        template="Hi {{ first_name|nosuchfilter }}",
    )
    unclosed = CadenceStep(
        cadence=cadence,
        position=15,
        channel=Channel.SMS,
        delay_minutes=60,
        template="{% if vehicle %}open",
    )
    no_subject = CadenceStep(
        cadence=cadence,
        position=16,
        channel=Channel.EMAIL,
        delay_minutes=60,
        template="Hello",
    )

    with pytest.raises(ValidationError) as first:
        broken.full_clean()
    with pytest.raises(ValidationError) as second:
        unclosed.full_clean()
    with pytest.raises(ValidationError) as third:
        no_subject.full_clean()

    assert "nosuchfilter" in str(first.value)
    assert "does not compile" in str(second.value)
    assert "needs a subject" in str(third.value)


def test_admin_refuses_a_broken_template_readably(tenant, tenant_client):
    tenant_client.force_login(User.objects.create_superuser("boss", password="x"))
    cadence = services.cadence_default_ensure()
    step = cadence.steps.get(position=1)

    response = tenant_client.post(
        f"/admin/touchpoints/cadencestep/{step.pk}/change/",
        {
            "cadence": cadence.pk,
            "position": 1,
            "channel": "sms",
            "delay_minutes": 0,
            "subject": "",
            "template": "Hi {% for %}",
        },
    )

    assert response.status_code == 200
    assert "does not compile" in response.content.decode()
    step.refresh_from_db()
    assert step.template.startswith("Hi {{ first_name")


def test_render_fills_the_lead_and_location(lead):
    step = services.cadence_default_ensure().steps.get(position=1)

    rendered = services.step_render(
        step=step,
        context=services.template_context(
            lead=lead,
            chat_link="https://x.test/c/abc",
            channel=Channel.SMS,
            brand="Tint",
        ),
    )

    assert rendered.body.startswith(
        f"Hi {lead.first_name}, thanks for your quote request at {lead.location.name}!"
    )
    assert "https://x.test/c/abc" in rendered.body
    assert rendered.body.endswith("Reply STOP to opt out.")


def test_start_schedules_one_touch_point_per_step(
    lead, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        enrollment = services.cadence_start(lead=lead, now=DAYTIME)

    assert enrollment.status == EnrollmentStatus.ACTIVE
    rows = list(
        TouchPoint.objects.filter(lead=lead)
        .select_related("step")
        .order_by("step__position")
    )
    assert len(rows) == 13
    assert all(r.status == TouchPointStatus.SCHEDULED for r in rows)
    assert [r.due_at for r in rows] == [
        DAYTIME + timedelta(minutes=r.step.delay_minutes) for r in rows
    ]
    assert (
        len(callbacks) == 1
    )  # the first touches are queued at commit, not at the next tick
    # starting again changes nothing
    assert (
        services.cadence_start(lead=lead, now=DAYTIME + timedelta(hours=1))
        == enrollment
    )
    assert TouchPoint.objects.filter(lead=lead).count() == 13


def test_a_closed_lead_is_not_enrolled(lead):
    services.lead_mark_lost(lead=lead, reason="Bought elsewhere")
    assert services.cadence_start(lead=lead) is None
    assert not TouchPoint.objects.exists()


@pytest.mark.parametrize(
    "reason", ["replied", "chatted", "booked", "opted_out", "lead_lost", "staff"]
)
def test_stop_cancels_every_remaining_touch_point_with_its_reason(lead, reason):
    services.cadence_start(lead=lead, now=DAYTIME)
    sent = TouchPoint.objects.filter(lead=lead).order_by("due_at").first()
    TouchPoint.objects.filter(pk=sent.pk).update(status=TouchPointStatus.SENT)

    cancelled = services.cadence_stop(lead=lead, reason=reason)

    assert cancelled == 12
    assert TouchPoint.objects.get(pk=sent.pk).status == TouchPointStatus.SENT
    reasons = set(
        TouchPoint.objects.filter(
            lead=lead, status=TouchPointStatus.CANCELLED
        ).values_list("reason", flat=True)
    )
    assert len(reasons) == 1
    assert reasons.pop() != ""
    enrollment = CadenceEnrollment.objects.get(lead=lead)
    assert (enrollment.status, enrollment.stop_reason) == (
        EnrollmentStatus.STOPPED,
        reason,
    )


def test_stop_is_one_statement_and_releases_a_claimed_touch_point(
    lead, django_assert_num_queries
):
    services.cadence_start(lead=lead, now=DAYTIME)
    claimed = TouchPoint.objects.filter(lead=lead).order_by("due_at").first()
    TouchPoint.objects.filter(pk=claimed.pk).update(
        status=TouchPointStatus.CLAIMED, claimed_until=DAYTIME + timedelta(minutes=5)
    )
    CadenceEnrollment.objects.filter(lead=lead).update(status=EnrollmentStatus.PAUSED)

    with django_assert_num_queries(1):
        cancelled = services.cadence_stop(lead=lead, reason="chatted", now=DAYTIME)

    assert cancelled == 13
    claimed.refresh_from_db()
    assert (claimed.status, claimed.claimed_until, claimed.finished_at) == (
        TouchPointStatus.CANCELLED,
        None,
        DAYTIME,
    )
    enrollment = CadenceEnrollment.objects.get(lead=lead)
    assert (enrollment.status, enrollment.stopped_at) == (
        EnrollmentStatus.STOPPED,
        DAYTIME,
    )
    # Stopping again changes nothing.
    assert services.cadence_stop(lead=lead, reason="replied") == 0
    assert CadenceEnrollment.objects.get(lead=lead).stop_reason == "chatted"


def test_marking_lost_stops_the_cadence(lead):
    services.cadence_start(lead=lead, now=DAYTIME)

    services.lead_mark_lost(lead=lead, reason="No budget")

    lead.refresh_from_db()
    assert lead.status == LeadStatus.LOST
    assert not TouchPoint.objects.filter(
        lead=lead, status=TouchPointStatus.SCHEDULED
    ).exists()
    assert CadenceEnrollment.objects.get(lead=lead).stop_reason == "lead_lost"


def test_pause_and_resume(lead):
    services.cadence_start(lead=lead, now=DAYTIME)

    held = services.cadence_pause(lead=lead)
    resumed = services.cadence_resume(lead=lead, now=DAYTIME + timedelta(days=3))

    assert held == resumed == 13
    rows = TouchPoint.objects.filter(lead=lead)
    assert set(rows.values_list("status", flat=True)) == {TouchPointStatus.SCHEDULED}
    assert min(rows.values_list("due_at", flat=True)) == DAYTIME + timedelta(days=3)
    assert CadenceEnrollment.objects.get(lead=lead).status == EnrollmentStatus.ACTIVE
    with pytest.raises(ApplicationError, match="not paused"):
        services.cadence_resume(lead=lead)


def test_no_message_is_recorded_when_nothing_was_due(lead):
    services.cadence_start(lead=lead, now=DAYTIME)
    assert not OutboundMessage.objects.exists()


def test_cadence_list_runs_the_same_queries_for_any_number_of_cadences(
    tenant, tenant_client
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    tenant_client.force_login(User.objects.create_superuser("boss", password="x"))
    services.cadence_default_ensure()
    Cadence.objects.create(name="Short")
    with CaptureQueriesContext(connection) as few:
        tenant_client.get("/admin/touchpoints/cadence/")
    for n in range(5):
        Cadence.objects.create(name=f"Extra {n}")

    with CaptureQueriesContext(connection) as many:
        response = tenant_client.get("/admin/touchpoints/cadence/")

    assert len(many.captured_queries) == len(few.captured_queries)
    assert ">13<" in response.content.decode()
