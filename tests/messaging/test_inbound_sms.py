"""POST /webhooks/twilio/sms: a customer's SMS, signed by Twilio, answered through the gate."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django_tenants.utils import schema_context
from twilio.request_validator import RequestValidator

from leads.models import Lead, LeadEvent, LeadEventKind, LeadStatus
from messaging.inbound import keyword_of
from messaging.models import (
    InboundKind,
    InboundMessage,
    MessageKind,
    MessageStatus,
    MessagingPolicy,
    OptOut,
    OptOutSource,
    OutboundMessage,
)
from tenants.models import Domain, OutboundMode, Tenant
from tests.conftest import host_of
from tests.factories import LeadFactory, LocationFactory

TWILIO_TOKEN = "twilio-test-auth-token"
PATH = "/webhooks/twilio/sms"
PHONE = "+18585550142"
BRAND_NUMBER = "+16195550100"
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
STOP_CONFIRMATION = "Alpha Tint: You are unsubscribed and will get no more texts from us. Reply START to resubscribe."
START_CONFIRMATION = "Alpha Tint: You are resubscribed to our texts. Reply HELP for help, STOP to opt out."

REPLIES: list[dict[str, Any]] = []
OPT_OUTS: list[dict[str, Any]] = []


def record_reply(**kwargs: Any) -> None:
    REPLIES.append(kwargs)


def record_opt_out(**kwargs: Any) -> None:
    OPT_OUTS.append(kwargs)


@pytest.fixture
def live(tenant, settings):
    """Alpha in live mode, the outbox backend, a Twilio token, and recording handlers."""
    settings.MESSAGING_BACKEND = "outbox"
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.INBOUND_REPLY_HANDLERS = [f"{__name__}.record_reply"]
    settings.OPT_OUT_HANDLERS = [f"{__name__}.record_opt_out"]
    REPLIES.clear()
    OPT_OUTS.clear()
    with schema_context("public"):
        Tenant.objects.filter(pk=tenant.pk).update(outbound_mode=OutboundMode.LIVE)
    tenant.outbound_mode = OutboundMode.LIVE
    yield tenant
    REPLIES.clear()
    OPT_OUTS.clear()


@pytest.fixture
def lead(live):
    return LeadFactory(phone=PHONE)


def sms(
    body: str, *, sid: str = "SM00000000000000000000000000000001", sender: str = PHONE
) -> dict[str, str]:
    """The form fields Twilio posts for an incoming SMS."""
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": BRAND_NUMBER,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": "AC00000000000000000000000000000000",
        "From": sender,
        "ApiVersion": "2010-04-01",
    }


def post_sms(
    client: Client,
    params: dict[str, str],
    *,
    url: str | None = None,
    token: str = TWILIO_TOKEN,
    signature: str | None = None,
):
    """POST ``params`` as Twilio does, signed for ``url`` (default: http://<client's host>/webhooks/twilio/sms)."""
    url = url or f"http://{client.defaults['HTTP_HOST']}{PATH}"
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, params)
    extra = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature else {}
    return client.post(
        PATH,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        **extra,
    )


def assert_empty_twiml(response) -> None:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/xml"
    assert response.content == EMPTY_TWIML


# --- keywords ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP", "stop"),
        ("Stop.", "stop"),
        (" stop! ", "stop"),
        ("STOP\n", "stop"),
        ("Opt-Out", "stop"),
        ("opt   out", "stop"),
        ("unstop", "start"),
        ("Start", "start"),
        ("help?", "help"),
        ("INFO", "help"),
        ("please stop texting me", ""),
        ("stop it", ""),
        ("", ""),
        ("...", ""),
    ],
)
def test_keyword_of(body, keyword):
    assert keyword_of(body) == keyword


# --- STOP --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        "Stop.",
        " STOPALL ",
        "unsubscribe",
        "Cancel!",
        "end",
        "QUIT",
        "revoke",
        "optout",
        "opt out",
    ],
)
def test_stop_keyword_opts_out_with_exactly_one_confirmation(lead, tenant_client, body):
    # when
    response = post_sms(tenant_client, sms(body))

    # then
    assert_empty_twiml(response)
    inbound = InboundMessage.objects.get()
    assert (
        inbound.kind,
        inbound.lead,
        inbound.from_number,
        inbound.to_number,
        inbound.body,
    ) == (
        InboundKind.STOP,
        lead,
        PHONE,
        BRAND_NUMBER,
        body,
    )
    optout = OptOut.objects.get()
    assert (optout.channel, optout.address, optout.source, optout.revoked_at) == (
        "sms",
        PHONE,
        OptOutSource.SMS_KEYWORD,
        None,
    )
    confirmation = OutboundMessage.objects.get()
    assert (
        confirmation.channel,
        confirmation.kind,
        confirmation.to,
        confirmation.lead,
    ) == (
        "sms",
        MessageKind.SYSTEM,
        PHONE,
        lead,
    )
    assert confirmation.status == MessageStatus.RECORDED
    assert confirmation.body == STOP_CONFIRMATION
    assert OPT_OUTS == [{"channel": "sms", "address": PHONE}]
    assert REPLIES == []
    lead.refresh_from_db()
    assert lead.status == LeadStatus.NEW


def test_second_stop_sends_no_second_confirmation(lead, tenant_client):
    # given
    post_sms(tenant_client, sms("STOP", sid="SM1"))

    # when
    response = post_sms(tenant_client, sms("stop", sid="SM2"))

    # then
    assert_empty_twiml(response)
    assert InboundMessage.objects.count() == 2
    assert OptOut.objects.count() == 1
    assert list(OutboundMessage.objects.values_list("body", flat=True)) == [
        STOP_CONFIRMATION
    ]
    # the handlers hear every STOP; stopping a stopped cadence is a no-op for them
    assert OPT_OUTS == [{"channel": "sms", "address": PHONE}] * 2


def test_stop_then_start_revokes_the_opt_out_and_confirms_once(lead, tenant_client):
    # given
    post_sms(tenant_client, sms("STOP", sid="SM1"))

    # when
    response = post_sms(tenant_client, sms("Start", sid="SM2"))
    post_sms(tenant_client, sms("START", sid="SM3"))

    # then
    assert_empty_twiml(response)
    optout = OptOut.objects.get()
    assert optout.revoked_at is not None
    assert list(
        OutboundMessage.objects.order_by("pk").values_list("kind", "status", "body")
    ) == [
        (MessageKind.SYSTEM, MessageStatus.RECORDED, STOP_CONFIRMATION),
        (MessageKind.SYSTEM, MessageStatus.RECORDED, START_CONFIRMATION),
    ]
    assert list(
        InboundMessage.objects.order_by("received_at", "pk").values_list(
            "kind", flat=True
        )
    ) == [
        InboundKind.STOP,
        InboundKind.START,
        InboundKind.START,
    ]


def test_start_without_an_opt_out_sends_nothing(lead, tenant_client):
    response = post_sms(tenant_client, sms("START"))

    assert_empty_twiml(response)
    assert InboundMessage.objects.get().kind == InboundKind.START
    assert not OptOut.objects.exists()
    assert not OutboundMessage.objects.exists()


def test_stop_in_disabled_mode_opts_out_but_the_gate_blocks_the_confirmation(
    tenant, lead, tenant_client
):
    # given: the brand sends nothing
    with schema_context("public"):
        Tenant.objects.filter(pk=tenant.pk).update(outbound_mode=OutboundMode.DISABLED)

    # when
    post_sms(tenant_client, sms("STOP"))

    # then
    assert OptOut.objects.get().address == PHONE
    confirmation = OutboundMessage.objects.get()
    assert (confirmation.status, confirmation.block_reason) == (
        MessageStatus.BLOCKED,
        "mode_disabled",
    )


# --- HELP --------------------------------------------------------------------------------------


def test_help_answers_with_brand_and_policy_contact_and_does_not_opt_out(
    lead, tenant_client
):
    # given
    MessagingPolicy.objects.update_or_create(
        singleton=True, defaults={"help_contact": "help@alpha.example"}
    )

    # when
    response = post_sms(tenant_client, sms("Help"))

    # then
    assert_empty_twiml(response)
    assert InboundMessage.objects.get().kind == InboundKind.HELP
    reply = OutboundMessage.objects.get()
    assert (reply.kind, reply.to, reply.status) == (
        MessageKind.SYSTEM,
        PHONE,
        MessageStatus.RECORDED,
    )
    assert (
        reply.body
        == "Alpha Tint: For help, contact help@alpha.example. Reply STOP to opt out."
    )
    assert not OptOut.objects.exists()
    assert OPT_OUTS == []
    assert REPLIES == []


def test_help_without_a_policy_contact_gives_the_locations_phone(live, tenant_client):
    # given
    location = LocationFactory(phone="+16195550123", email="store@alpha.example")
    LeadFactory(phone=PHONE, location=location)

    # when
    post_sms(tenant_client, sms("INFO"))

    # then
    assert (
        OutboundMessage.objects.get().body
        == "Alpha Tint: For help, contact (619) 555-0123. Reply STOP to opt out."
    )


def test_help_without_phone_gives_the_locations_email(live, tenant_client):
    location = LocationFactory(phone="", email="store@alpha.example")
    LeadFactory(phone=PHONE, location=location)

    post_sms(tenant_client, sms("help"))

    assert (
        OutboundMessage.objects.get().body
        == "Alpha Tint: For help, contact store@alpha.example. Reply STOP to opt out."
    )


# --- replies -----------------------------------------------------------------------------------


def test_a_sentence_with_stop_is_a_reply_that_engages_the_lead(lead, tenant_client):
    # when
    response = post_sms(tenant_client, sms("please stop texting me"))

    # then
    assert_empty_twiml(response)
    inbound = InboundMessage.objects.get()
    assert (inbound.kind, inbound.lead) == (InboundKind.REPLY, lead)
    assert not OptOut.objects.exists()
    assert not OutboundMessage.objects.exists()
    lead.refresh_from_db()
    assert lead.status == LeadStatus.ENGAGED
    assert lead.engaged_at is not None
    event = LeadEvent.objects.filter(lead=lead, kind=LeadEventKind.STATUS_CHANGED).get()
    assert (event.from_status, event.to_status, event.message) == (
        LeadStatus.NEW,
        LeadStatus.ENGAGED,
        "Replied by SMS",
    )
    assert [{"lead": lead, "inbound": inbound}] == REPLIES
    assert OPT_OUTS == []


def test_a_second_reply_keeps_the_lead_engaged_and_calls_the_handlers_again(
    lead, tenant_client
):
    post_sms(tenant_client, sms("Is Tuesday free?", sid="SM1"))

    post_sms(tenant_client, sms("Or Wednesday?", sid="SM2"))

    lead.refresh_from_db()
    assert lead.status == LeadStatus.ENGAGED
    assert (
        LeadEvent.objects.filter(lead=lead, kind=LeadEventKind.STATUS_CHANGED).count()
        == 1
    )
    assert [call["inbound"].body for call in REPLIES] == [
        "Is Tuesday free?",
        "Or Wednesday?",
    ]


def test_the_reply_goes_to_the_newest_open_lead_of_the_number(live, tenant_client):
    # given: an older open lead, a newer lost one, an older lost one
    older_lost = LeadFactory(phone=PHONE)
    Lead.objects.filter(pk=older_lost.pk).update(status=LeadStatus.LOST)
    open_lead = LeadFactory(phone=PHONE)
    newer_lost = LeadFactory(phone=PHONE)
    Lead.objects.filter(pk=newer_lost.pk).update(status=LeadStatus.LOST)

    # when
    post_sms(tenant_client, sms("Yes please"))

    # then
    assert InboundMessage.objects.get().lead == open_lead
    open_lead.refresh_from_db()
    assert open_lead.status == LeadStatus.ENGAGED
    assert [{"lead": open_lead, "inbound": InboundMessage.objects.get()}] == REPLIES


def test_a_national_format_sender_number_finds_the_lead(lead, tenant_client):
    post_sms(tenant_client, sms("Hi", sender="(858) 555-0142"))

    inbound = InboundMessage.objects.get()
    assert (inbound.from_number, inbound.lead) == (PHONE, lead)


# --- unknown senders ---------------------------------------------------------------------------


def test_unknown_sender_is_stored_without_a_lead_and_a_reply_calls_nothing(
    lead, tenant_client
):
    response = post_sms(tenant_client, sms("Who is this?", sender="+14155550199"))

    assert_empty_twiml(response)
    inbound = InboundMessage.objects.get()
    assert (inbound.from_number, inbound.lead, inbound.kind) == (
        "+14155550199",
        None,
        InboundKind.REPLY,
    )
    assert REPLIES == []
    lead.refresh_from_db()
    assert lead.status == LeadStatus.NEW


def test_unknown_sender_keywords_still_work(live, tenant_client):
    # when
    post_sms(tenant_client, sms("STOP", sid="SM1", sender="+14155550199"))
    post_sms(tenant_client, sms("HELP", sid="SM2", sender="+14155550199"))

    # then
    optout = OptOut.objects.get()
    assert (optout.channel, optout.address) == ("sms", "+14155550199")
    assert list(
        OutboundMessage.objects.order_by("pk").values_list(
            "to", "lead", "status", "body"
        )
    ) == [
        ("+14155550199", None, MessageStatus.RECORDED, STOP_CONFIRMATION),
        (
            "+14155550199",
            None,
            MessageStatus.RECORDED,
            "Alpha Tint: Reply STOP to opt out.",
        ),
    ]
    assert OPT_OUTS == [{"channel": "sms", "address": "+14155550199"}]


def test_a_garbage_sender_number_is_tolerated(live, tenant_client):
    response = post_sms(tenant_client, sms("hello", sender="not-a-number"))

    assert_empty_twiml(response)
    inbound = InboundMessage.objects.get()
    assert (inbound.from_number, inbound.lead, inbound.kind) == (
        "not-a-number",
        None,
        InboundKind.REPLY,
    )


# --- redelivery --------------------------------------------------------------------------------


def test_a_redelivered_message_sid_is_handled_once(lead, tenant_client):
    # given
    post_sms(tenant_client, sms("STOP", sid="SM1"))
    post_sms(tenant_client, sms("yes", sid="SM2"))

    # when: Twilio delivers both again
    first = post_sms(tenant_client, sms("STOP", sid="SM1"))
    second = post_sms(tenant_client, sms("yes", sid="SM2"))

    # then
    assert_empty_twiml(first)
    assert_empty_twiml(second)
    assert InboundMessage.objects.count() == 2
    assert OptOut.objects.count() == 1
    assert OutboundMessage.objects.count() == 1
    assert len(OPT_OUTS) == 1
    assert len(REPLIES) == 1


# --- signatures --------------------------------------------------------------------------------


def assert_nothing_stored() -> None:
    assert not InboundMessage.objects.exists()
    assert not OptOut.objects.exists()
    assert not OutboundMessage.objects.exists()
    assert OPT_OUTS == []
    assert REPLIES == []


def test_missing_signature_is_403_and_nothing_is_stored(lead, tenant_client):
    response = post_sms(tenant_client, sms("STOP"), signature="")

    assert response.status_code == 403
    assert response.json() == {
        "error": "missing_signature",
        "detail": "The X-Twilio-Signature header is missing.",
    }
    assert_nothing_stored()


@pytest.mark.parametrize(
    "how",
    [
        "another token",
        "another path",
        "another host",
        "https instead of http",
        "garbage",
    ],
)
def test_invalid_signature_is_403_and_nothing_is_stored(
    lead, tenant_client, tenant, how
):
    # given
    url = f"http://{host_of(tenant)}{PATH}"
    kwargs: dict[str, Any] = {
        "another token": {"token": "someone-elses-token"},
        "another path": {"url": f"http://{host_of(tenant)}/webhooks/twilio/status"},
        "another host": {"url": f"http://bravo.localhost{PATH}"},
        "https instead of http": {"url": url.replace("http://", "https://")},
        "garbage": {"signature": "not a signature"},
    }[how]

    # when
    response = post_sms(tenant_client, sms("STOP"), **kwargs)

    # then
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_signature"
    assert_nothing_stored()


def test_a_tampered_body_is_403(lead, tenant_client, tenant):
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        f"http://{host_of(tenant)}{PATH}", sms("yes")
    )

    response = post_sms(tenant_client, sms("STOP"), signature=signature)

    assert response.status_code == 403
    assert_nothing_stored()


def test_no_auth_token_configured_is_403_with_a_clear_detail(
    lead, tenant_client, settings
):
    # given: a request signed with some token, but none configured here
    settings.TWILIO_AUTH_TOKEN = ""

    # when
    response = post_sms(tenant_client, sms("STOP"))

    # then
    assert response.status_code == 403
    assert response.json() == {
        "error": "not_configured",
        "detail": "TWILIO_AUTH_TOKEN is not configured, so Twilio's requests cannot be verified.",
    }
    assert_nothing_stored()


def test_the_signed_url_uses_the_configured_scheme_and_port_suffix(
    lead, tenant, settings
):
    # given: behind a TLS proxy, public URLs carry :8443
    settings.HTTPS = True
    settings.PUBLIC_PORT_SUFFIX = ":8443"
    client = Client(HTTP_HOST=f"{host_of(tenant)}:8443")

    # when
    response = post_sms(client, sms("yes"), url=f"https://{host_of(tenant)}:8443{PATH}")

    # then
    assert_empty_twiml(response)
    assert InboundMessage.objects.get().lead == lead


def test_a_signature_for_the_primary_domain_is_accepted_at_another_host_of_the_brand(
    lead, tenant
):
    # given: alpha also answers at sms.alpha.localhost; Twilio signed the primary domain's URL
    with schema_context("public"):
        Domain.objects.create(
            tenant=tenant, domain="sms.alpha.localhost", is_primary=False
        )
    client = Client(HTTP_HOST="sms.alpha.localhost")

    # when
    response = post_sms(client, sms("yes"), url=f"http://{host_of(tenant)}{PATH}")

    # then
    assert_empty_twiml(response)
    assert InboundMessage.objects.get().lead == lead


def test_a_signed_request_without_message_sid_is_400(lead, tenant_client):
    params = sms("STOP")
    del params["MessageSid"], params["SmsSid"], params["SmsMessageSid"]

    response = post_sms(tenant_client, params)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_body"
    assert_nothing_stored()


def test_get_is_not_allowed(lead, tenant_client):
    assert tenant_client.get(PATH).status_code == 405
