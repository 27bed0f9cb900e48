"""POST /webhooks/twilio/status: Twilio's delivery reports for the SMS we sent."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.utils import timezone
from twilio.request_validator import RequestValidator

from messaging.models import (
    MessageKind,
    MessageStatus,
    OptOut,
    OptOutSource,
    OutboundMessage,
)
from tests.factories import LeadFactory

TWILIO_TOKEN = "twilio-test-auth-token"
PATH = "/webhooks/twilio/status"
PHONE = "+18585550142"
SID = "SM11111111111111111111111111111111"

OPT_OUTS: list[dict[str, Any]] = []


def record_opt_out(**kwargs: Any) -> None:
    OPT_OUTS.append(kwargs)


@pytest.fixture
def callbacks(tenant, settings):
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.OPT_OUT_HANDLERS = [f"{__name__}.record_opt_out"]
    settings.INBOUND_REPLY_HANDLERS = []
    OPT_OUTS.clear()
    yield
    OPT_OUTS.clear()


@pytest.fixture
def message(callbacks) -> OutboundMessage:
    """An SMS Twilio accepted (as TwilioBackend records it)."""
    lead = LeadFactory(phone=PHONE)
    return OutboundMessage.objects.create(
        lead=lead,
        location=lead.location,
        channel="sms",
        kind=MessageKind.CADENCE,
        to=PHONE,
        body="Hi, your quote is ready.",
        status=MessageStatus.SENT,
        backend="twilio",
        provider_message_id=SID,
        attempted_at=timezone.now(),
        sent_at=timezone.now(),
    )


def status(
    message_status: str, *, sid: str = SID, error_code: str = ""
) -> dict[str, str]:
    """The form fields of a Twilio status callback."""
    params = {
        "AccountSid": "AC00000000000000000000000000000000",
        "ApiVersion": "2010-04-01",
        "From": "+16195550100",
        "To": PHONE,
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": message_status,
        "SmsStatus": message_status,
    }
    if error_code:
        params["ErrorCode"] = error_code
    return params


def post_status(
    client,
    params: dict[str, str],
    *,
    token: str = TWILIO_TOKEN,
    signature: str | None = None,
):
    url = f"http://{client.defaults['HTTP_HOST']}{PATH}"
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, params)
    return client.post(
        PATH,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def delivery(message: OutboundMessage) -> tuple[str, Any, str]:
    message.refresh_from_db()
    return message.delivery_status, message.delivery_updated_at, message.error_code


def test_delivered_after_sent_is_applied(message, tenant_client):
    # given
    first = post_status(tenant_client, status("sent"))
    after_sent = delivery(message)

    # when
    second = post_status(tenant_client, status("delivered"))

    # then
    assert (first.status_code, second.status_code) == (204, 204)
    assert second.content == b""
    assert after_sent[0] == "sent"
    assert after_sent[1] is not None
    status_now, updated_at, error_code = delivery(message)
    assert (status_now, error_code) == ("delivered", "")
    assert updated_at >= after_sent[1]
    assert message.status == MessageStatus.SENT


@pytest.mark.parametrize("late", ["sent", "sending", "queued", "accepted"])
def test_a_late_earlier_status_does_not_overwrite_delivered(
    message, tenant_client, late
):
    # given
    post_status(tenant_client, status("delivered"))
    before = delivery(message)

    # when
    response = post_status(tenant_client, status(late))

    # then
    assert response.status_code == 204
    assert delivery(message) == before
    assert before[0] == "delivered"


def test_queued_then_sent_moves_forward(message, tenant_client):
    post_status(tenant_client, status("queued"))
    post_status(tenant_client, status("sent"))

    assert delivery(message)[0] == "sent"


def test_a_final_status_is_not_overwritten_by_another_final_one(message, tenant_client):
    post_status(tenant_client, status("undelivered", error_code="30003"))

    post_status(tenant_client, status("delivered"))

    assert delivery(message)[::2] == ("undelivered", "30003")


def test_error_21610_opts_the_number_out(message, tenant_client):
    # when
    response = post_status(tenant_client, status("failed", error_code="21610"))

    # then
    assert response.status_code == 204
    assert delivery(message)[::2] == ("failed", "21610")
    optout = OptOut.objects.get()
    assert (optout.channel, optout.address, optout.source, optout.revoked_at) == (
        "sms",
        PHONE,
        OptOutSource.PROVIDER,
        None,
    )
    assert OPT_OUTS == [{"channel": "sms", "address": PHONE}]


def test_another_error_does_not_opt_out(message, tenant_client):
    post_status(tenant_client, status("undelivered", error_code="30005"))

    assert delivery(message)[::2] == ("undelivered", "30005")
    assert not OptOut.objects.exists()
    assert OPT_OUTS == []


def test_an_unknown_message_sid_is_200_and_changes_nothing(message, tenant_client):
    # given: a message of the outbox with the same id is not Twilio's
    OutboundMessage.objects.create(
        channel="sms",
        kind=MessageKind.CADENCE,
        to=PHONE,
        body="Recorded only",
        status=MessageStatus.RECORDED,
        backend="outbox",
        provider_message_id="SM99999999999999999999999999999999",
    )

    # when
    response = post_status(
        tenant_client,
        status("failed", sid="SM99999999999999999999999999999999", error_code="21610"),
    )

    # then
    assert response.status_code == 200
    assert response.json() == {
        "status": "ignored",
        "detail": "No message has this MessageSid.",
    }
    assert list(OutboundMessage.objects.values_list("delivery_status", flat=True)) == [
        "",
        "",
    ]
    assert not OptOut.objects.exists()
    assert OPT_OUTS == []


@pytest.mark.parametrize(
    ("token", "signature"), [("someone-elses-token", None), (TWILIO_TOKEN, "")]
)
def test_a_bad_or_missing_signature_is_403_and_changes_nothing(
    message, tenant_client, token, signature
):
    response = post_status(
        tenant_client,
        status("failed", error_code="21610"),
        token=token,
        signature=signature,
    )

    assert response.status_code == 403
    assert response.json()["error"] in {"invalid_signature", "missing_signature"}
    assert delivery(message) == ("", None, "")
    assert not OptOut.objects.exists()


def test_a_signed_callback_without_status_is_400(message, tenant_client):
    params = status("sent")
    del params["MessageStatus"], params["SmsStatus"]

    response = post_status(tenant_client, params)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_body"
    assert delivery(message) == ("", None, "")
