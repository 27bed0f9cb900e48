"""Due touch points go out once each, through the gate, with every outcome recorded."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests
import time_machine
from django.db import connection
from django_tenants.utils import tenant_context

from leads.models import Lead
from messaging.models import (
    BlockReason,
    Channel,
    MessageStatus,
    OptOut,
    OutboundMessage,
)
from tests.factories import LeadFactory, LocationFactory
from tests.messaging_fakes import SendGridTransport, TwilioTransport, install
from tests.touchpoints.conftest import DAYTIME, set_outbound_mode
from touchpoints import processor, services
from touchpoints.models import (
    Cadence,
    CadenceEnrollment,
    CadenceStep,
    TouchPoint,
    TouchPointStatus,
)


def _first_two_due(lead):
    services.cadence_start(lead=lead, now=DAYTIME)
    return processor.touchpoints_process_due(now=DAYTIME)


def test_first_sms_and_email_go_out_at_once_through_the_outbox(live, lead):
    # when
    stats = _first_two_due(lead)

    # then
    assert (stats.claimed, stats.sent) == (2, 2)
    messages = {m.channel: m for m in OutboundMessage.objects.filter(lead=lead)}
    assert set(messages) == {Channel.SMS, Channel.EMAIL}
    assert {m.status for m in messages.values()} == {MessageStatus.RECORDED}
    sms = messages[Channel.SMS]
    assert sms.to == "+16195550141"
    assert sms.body.startswith(
        f"Hi {lead.first_name}, thanks for your quote request at {lead.location.name}!"
    )
    assert "/c/" in sms.body
    assert (
        messages[Channel.EMAIL].subject == f"Your quote request at {lead.location.name}"
    )
    done = TouchPoint.objects.filter(lead=lead, status=TouchPointStatus.RECORDED)
    assert done.count() == 2
    assert set(done.values_list("outbound_message__channel", flat=True)) == {
        Channel.SMS,
        Channel.EMAIL,
    }
    assert (
        TouchPoint.objects.filter(lead=lead, status=TouchPointStatus.SCHEDULED).count()
        == 11
    )


def test_disabled_brand_records_blocked_messages(tenant, lead, settings):
    settings.MESSAGING_BACKEND = "outbox"
    set_outbound_mode(tenant, "disabled")

    stats = _first_two_due(lead)

    assert stats.blocked == 2
    assert set(OutboundMessage.objects.values_list("status", "block_reason")) == {
        (MessageStatus.BLOCKED, BlockReason.MODE_DISABLED)
    }
    assert TouchPoint.objects.filter(status=TouchPointStatus.BLOCKED).count() == 2


def test_quiet_hours_move_due_rows_to_the_next_allowed_minute(live, lead):
    services.cadence_start(lead=lead, now=DAYTIME)
    night = datetime(2026, 11, 19, 5, 30, tzinfo=UTC)  # 21:30 in San Diego
    TouchPoint.objects.filter(lead=lead).update(due_at=night - timedelta(minutes=1))

    stats = processor.touchpoints_process_due(now=night)

    assert stats.sent == 0
    assert stats.deferred == 13
    assert not OutboundMessage.objects.exists()
    next_morning = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)  # 08:00 in San Diego
    assert set(
        TouchPoint.objects.filter(lead=lead).values_list("due_at", flat=True)
    ) == {next_morning}
    assert set(TouchPoint.objects.values_list("status", flat=True)) == {
        TouchPointStatus.SCHEDULED
    }


def test_a_closed_lead_or_a_stopped_cadence_cancels_due_rows(live, lead):
    services.cadence_start(lead=lead, now=DAYTIME)
    CadenceEnrollment.objects.filter(lead=lead).update(status="stopped")

    stats = processor.touchpoints_process_due(now=DAYTIME)

    assert stats.cancelled == 2
    assert not OutboundMessage.objects.exists()


def test_the_daily_cap_holds_across_flows(live, lead):
    services.cadence_start(lead=lead, now=DAYTIME)
    TouchPoint.objects.filter(lead=lead, channel=Channel.SMS).update(due_at=DAYTIME)

    stats = processor.touchpoints_process_due(now=DAYTIME)

    sms_sent = OutboundMessage.objects.filter(
        channel=Channel.SMS, status=MessageStatus.RECORDED
    ).count()
    assert sms_sent == 3  # the brand's default cap per recipient per 24 hours
    assert (
        stats.deferred == 7 - 3
    )  # seven SMS steps were due; the rest wait for the cap to free up
    held = TouchPoint.objects.filter(
        lead=lead, channel=Channel.SMS, status=TouchPointStatus.SCHEDULED
    )
    assert all(t.due_at > DAYTIME + timedelta(hours=24) for t in held)


def test_provider_errors_are_recorded_and_never_stop_the_batch(
    live, tenant, settings, monkeypatch
):
    # given: three leads; Twilio refuses one as unsubscribed and answers 500 for another
    def twilio_answer(to: str) -> tuple[int, dict]:
        if to == "+16195550002":
            return 400, {
                "code": 21610,
                "message": "Attempt to send to unsubscribed recipient",
                "status": 400,
            }
        if to == "+16195550003":
            return 500, {
                "code": 20500,
                "message": "Internal Server Error",
                "status": 500,
            }
        return 201, {}

    twilio, sendgrid = TwilioTransport(answer=twilio_answer), SendGridTransport()
    install(monkeypatch, settings, twilio=twilio, sendgrid=sendgrid)
    location = LocationFactory(time_zone="America/Los_Angeles", region="CA")
    leads = [
        LeadFactory(
            location=location, phone=f"+1619555000{i}", email=f"c{i}@example.com"
        )
        for i in (1, 2, 3)
    ]
    for lead in leads:
        services.cadence_start(lead=lead, now=DAYTIME)

    # when
    stats = processor.touchpoints_process_due(now=DAYTIME)

    # then
    by_phone = {m.to: m for m in OutboundMessage.objects.filter(channel=Channel.SMS)}
    assert by_phone["+16195550001"].status == MessageStatus.SENT
    assert by_phone["+16195550001"].provider_message_id.startswith("SM")
    assert (by_phone["+16195550002"].status, by_phone["+16195550002"].error_code) == (
        MessageStatus.FAILED,
        "21610",
    )
    assert OptOut.objects.filter(
        channel=Channel.SMS, address="+16195550002", revoked_at__isnull=True
    ).exists()
    assert by_phone["+16195550003"].status == MessageStatus.UNKNOWN
    assert (
        TouchPoint.objects.get(outbound_message=by_phone["+16195550003"]).status
        == TouchPointStatus.NEEDS_REVIEW
    )
    assert (
        OutboundMessage.objects.filter(
            channel=Channel.EMAIL, status=MessageStatus.SENT
        ).count()
        == 3
    )
    assert (stats.sent, stats.failed, stats.needs_review) == (4, 1, 1)
    # what Twilio received: our sender, the callback URL, a validity period inside the window
    first = twilio.requests[0]["data"]
    assert first["From"] == "+16195550100"
    assert first["StatusCallback"] == "http://alpha.localhost/webhooks/twilio/status"
    assert 0 < int(first["ValidityPeriod"]) <= 11 * 3600
    # what SendGrid received: the unsubscribe headers, our ids for its event webhook, the postal footer
    mail = sendgrid.requests[0]["payload"]
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["headers"]["List-Unsubscribe"].startswith("<http://alpha.localhost/u/")
    assert mail["custom_args"]["tenant"] == "alpha"
    assert "Unsubscribe: http://alpha.localhost/u/" in mail["content"][0]["value"]


def test_the_opted_out_recipient_gets_nothing_more(live, lead):
    OptOut.objects.create(channel=Channel.SMS, address=lead.phone, source="sms_keyword")

    _first_two_due(lead)

    sms = OutboundMessage.objects.get(channel=Channel.SMS)
    assert (sms.status, sms.block_reason) == (
        MessageStatus.BLOCKED,
        BlockReason.OPTED_OUT,
    )
    assert (
        OutboundMessage.objects.get(channel=Channel.EMAIL).status
        == MessageStatus.RECORDED
    )


def test_a_timeout_after_the_request_left_is_never_resent(
    live, tenant, lead, settings, monkeypatch
):
    def read_timeout(to: str) -> tuple[int, dict]:
        raise requests.ReadTimeout("read timed out")

    twilio = TwilioTransport(answer=read_timeout)
    install(monkeypatch, settings, twilio=twilio, sendgrid=SendGridTransport())

    _first_two_due(lead)
    again = processor.touchpoints_process_due(now=DAYTIME + timedelta(minutes=1))

    sms = OutboundMessage.objects.get(channel=Channel.SMS)
    assert sms.status == MessageStatus.UNKNOWN
    assert "did not answer in time" in sms.error
    assert (
        TouchPoint.objects.get(outbound_message=sms).status
        == TouchPointStatus.NEEDS_REVIEW
    )
    assert again.claimed == 0
    assert len(twilio.requests) == 1


class WorkerKilledError(BaseException):
    """Stands for a SIGKILL: nothing after it runs, no except clause catches it."""


def _die(*args, **kwargs):
    raise WorkerKilledError


def _crash_first_batch(lead, monkeypatch, target: str) -> None:
    services.cadence_start(lead=lead, now=DAYTIME)
    monkeypatch.setattr(target, _die)
    with pytest.raises(WorkerKilledError):
        processor.touchpoints_process_due(now=DAYTIME)
    monkeypatch.undo()
    assert TouchPoint.objects.filter(status=TouchPointStatus.SENDING).count() == 2
    # another worker comes by before the timeout: nothing it may claim
    later = processor.touchpoints_process_due(now=DAYTIME + timedelta(minutes=1))
    assert later.claimed == 0


def test_rows_a_worker_left_before_recording_their_messages_are_sent_later_once(
    live, lead, monkeypatch
):
    """The crash lands between 'sending' committed and the messages recorded: no
    provider was called (messages are committed before any call), so nothing is lost."""
    _crash_first_batch(
        lead, monkeypatch, "touchpoints.processor.messaging.messages_send"
    )
    assert not OutboundMessage.objects.exists()

    settled = processor.touchpoints_recover_stuck(now=DAYTIME + timedelta(minutes=11))
    stats = processor.touchpoints_process_due(now=DAYTIME + timedelta(minutes=12))

    assert settled == 2
    assert stats.sent == 2
    first_two = TouchPoint.objects.filter(step__position__lte=2)
    assert set(first_two.values_list("status", flat=True)) == {
        TouchPointStatus.RECORDED
    }
    assert OutboundMessage.objects.count() == 2
    assert {t.outbound_message.channel for t in first_two} == {
        Channel.SMS,
        Channel.EMAIL,
    }


def test_rows_whose_messages_may_have_reached_the_provider_are_never_resent(
    live, lead, monkeypatch
):
    """The crash lands after the messages were recorded, at the provider call."""
    _crash_first_batch(lead, monkeypatch, "messaging.services._deliver")
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {
        MessageStatus.SENDING
    }

    settled = processor.touchpoints_recover_stuck(now=DAYTIME + timedelta(minutes=11))
    again = processor.touchpoints_process_due(now=DAYTIME + timedelta(minutes=12))

    assert settled == 2
    assert again.claimed == 0
    assert OutboundMessage.objects.count() == 2
    for touchpoint in TouchPoint.objects.filter(step__position__lte=2):
        assert touchpoint.status == TouchPointStatus.NEEDS_REVIEW
        assert touchpoint.finished_at == DAYTIME + timedelta(minutes=11)
        message = touchpoint.outbound_message
        assert message is not None, "staff find the message from the row"
        assert message.status == MessageStatus.UNKNOWN
        assert "may or may not" in message.error


def test_rows_whose_provider_answer_was_stored_take_that_answer(
    live, lead, monkeypatch
):
    """The crash lands after each provider's answer was stored, before the rows were."""
    _crash_first_batch(lead, monkeypatch, "touchpoints.processor._finish")
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {
        MessageStatus.RECORDED
    }

    settled = processor.touchpoints_recover_stuck(now=DAYTIME + timedelta(minutes=11))

    assert settled == 2
    first_two = TouchPoint.objects.filter(step__position__lte=2)
    assert set(first_two.values_list("status", flat=True)) == {
        TouchPointStatus.RECORDED
    }
    assert {t.outbound_message.status for t in first_two} == {MessageStatus.RECORDED}
    assert OutboundMessage.objects.count() == 2
    assert processor.touchpoints_recover_stuck(now=DAYTIME + timedelta(hours=1)) == 0


def test_a_claim_whose_worker_died_before_sending_is_taken_again(live, lead):
    services.cadence_start(lead=lead, now=DAYTIME)
    claimed = processor.touchpoints_claim(limit=10, now=DAYTIME)
    assert len(claimed) == 2

    # the lease runs out; nothing was sent, so another worker may send
    stats = processor.touchpoints_process_due(
        now=DAYTIME + processor.CLAIM_LEASE + timedelta(seconds=1)
    )

    assert stats.sent == 2
    assert OutboundMessage.objects.count() == 2


def test_two_workers_on_1000_due_touch_points_send_each_exactly_once(
    tenant_tx, settings
):
    # given: 1,000 leads, each with one due touch point
    settings.MESSAGING_BACKEND = "outbox"
    set_outbound_mode(tenant_tx, "live")
    location = LocationFactory(time_zone="America/Los_Angeles", region="CA")
    cadence = Cadence.objects.create(name="One step", is_default=True)
    step = CadenceStep.objects.create(
        cadence=cadence,
        position=1,
        channel=Channel.SMS,
        delay_minutes=0,
        template="Hi {{ first_name }}",
    )
    leads = Lead.objects.bulk_create(
        [
            Lead(
                location=location,
                first_name=f"C{i}",
                phone=f"+1619{2000000 + i:07d}",
                email=f"c{i}@example.com",
                source="staff",
            )
            for i in range(1000)
        ]
    )
    CadenceEnrollment.objects.bulk_create(
        [
            CadenceEnrollment(lead=lead, cadence=cadence, started_at=DAYTIME)
            for lead in leads
        ]
    )
    TouchPoint.objects.bulk_create(
        [
            TouchPoint(lead=lead, step=step, channel=Channel.SMS, due_at=DAYTIME)
            for lead in leads
        ]
    )
    results: list = []

    def worker() -> None:
        try:
            with (
                tenant_context(tenant_tx),
                time_machine.travel(DAYTIME + timedelta(minutes=1), tick=False),
            ):
                results.append(processor.touchpoints_process_due(batch_size=50))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert sum(r.claimed for r in results) == 1000
    assert all(r.claimed > 0 for r in results)  # both workers took part
    assert OutboundMessage.objects.count() == 1000
    assert OutboundMessage.objects.values("lead").distinct().count() == 1000
    assert set(TouchPoint.objects.values_list("status", flat=True)) == {
        TouchPointStatus.RECORDED
    }


def test_every_provider_call_has_a_timeout(settings):
    from messaging import backends

    settings.MESSAGING_PROVIDER_TIMEOUT_SECONDS = 7.5
    assert backends.twilio_http_client(timeout=7.5).timeout == 7.5
    assert (
        backends.SendGridBackend(api_key="SG.x", timeout=7.5).client.client.timeout
        == 7.5
    )
