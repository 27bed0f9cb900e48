"""POST /webhooks/sendgrid/events: SendGrid's signed Event Webhook, at a brand's host and the platform host."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from messaging.models import (
    MessageKind,
    MessageStatus,
    OptOut,
    OptOutSource,
    OutboundMessage,
    ProviderEvent,
)
from tests.conftest import PLATFORM_HOST
from tests.factories import LeadFactory

PATH = "/webhooks/sendgrid/events"
EMAIL = "jordan.rivera@example.com"
SG_MESSAGE_ID = "14c5d75ce93"
SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid's settings page shows it: base64 DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sign(
    payload: bytes, timestamp: str, key: ec.EllipticCurvePrivateKey = SIGNING_KEY
) -> str:
    return base64.b64encode(
        key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    ).decode()


OPT_OUTS: list[dict[str, Any]] = []


def record_opt_out(**kwargs: Any) -> None:
    OPT_OUTS.append(kwargs)


@pytest.fixture
def sendgrid(tenant, settings):
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = public_key_b64(SIGNING_KEY)
    settings.OPT_OUT_HANDLERS = [f"{__name__}.record_opt_out"]
    settings.INBOUND_REPLY_HANDLERS = []
    OPT_OUTS.clear()
    yield
    OPT_OUTS.clear()


def sent_email(
    *, to: str = EMAIL, provider_message_id: str = SG_MESSAGE_ID
) -> OutboundMessage:
    """An email SendGrid accepted (as SendGridBackend records it), in the current brand."""
    lead = LeadFactory(email=to)
    return OutboundMessage.objects.create(
        lead=lead,
        location=lead.location,
        channel="email",
        kind=MessageKind.CADENCE,
        to=to,
        subject="Your quote",
        body="Your quote is ready.",
        status=MessageStatus.SENT,
        backend="sendgrid",
        provider_message_id=provider_message_id,
        attempted_at=timezone.now(),
        sent_at=timezone.now(),
    )


@pytest.fixture
def message(sendgrid) -> OutboundMessage:
    return sent_email()


def event(
    kind: str,
    message: OutboundMessage | None,
    *,
    tenant: str | None = "alpha",
    **fields: Any,
) -> dict[str, Any]:
    """One event as SendGrid posts it, with our custom args flattened into it."""
    data: dict[str, Any] = {
        "email": EMAIL,
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": f"{kind}-{message.pk if message else 0}-event",
        "sg_message_id": f"{SG_MESSAGE_ID}.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "category": ["cadence"],
    }
    if tenant is not None:
        data["tenant"] = tenant
    if message is not None:
        data["message"] = str(message.public_id)
    data.update(fields)
    return data


def post_events(
    client: Client,
    events: Any = None,
    *,
    body: bytes | None = None,
    timestamp: str | None = None,
    key: ec.EllipticCurvePrivateKey = SIGNING_KEY,
    signature: str | None = None,
):
    payload = body if body is not None else json.dumps(events).encode()
    timestamp = timestamp or str(int(time.time()))
    headers = {
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": timestamp,
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": sign(payload, timestamp, key)
        if signature is None
        else signature,
    }
    return client.post(PATH, data=payload, content_type="application/json", **headers)


def state(message: OutboundMessage) -> tuple[str, Any]:
    message.refresh_from_db()
    return message.delivery_status, message.delivery_updated_at


# --- applying ----------------------------------------------------------------------------------


def test_a_valid_batch_is_applied(message, tenant_client):
    # when
    response = post_events(
        tenant_client,
        [
            event("processed", message),
            event("delivered", message),
            event("open", message),
        ],
    )

    # then
    assert response.status_code == 200
    assert response.json() == {"applied": 3, "duplicates": 0, "skipped": 0}
    status, updated_at = state(message)
    assert status == "open"
    assert updated_at is not None
    assert sorted(ProviderEvent.objects.values_list("provider", "event_id")) == [
        ("sendgrid", f"delivered-{message.pk}-event"),
        ("sendgrid", f"open-{message.pk}-event"),
        ("sendgrid", f"processed-{message.pk}-event"),
    ]
    assert not OptOut.objects.exists()
    assert OPT_OUTS == []


def test_events_out_of_order_do_not_regress(message, tenant_client):
    # given
    post_events(tenant_client, [event("click", message)])
    before = state(message)

    # when
    response = post_events(
        tenant_client,
        [
            event("delivered", message),
            event("deferred", message),
            event("open", message),
        ],
    )

    # then
    assert response.json() == {"applied": 3, "duplicates": 0, "skipped": 0}
    assert state(message) == before
    assert before[0] == "click"


def test_a_redelivered_batch_counts_duplicates_and_changes_nothing(
    message, tenant_client
):
    # given
    batch = [event("delivered", message), event("unsubscribe", message)]
    post_events(tenant_client, batch)
    before = state(message)
    optout_before = list(OptOut.objects.values_list("pk", "address", "revoked_at"))

    # when
    response = post_events(tenant_client, batch)

    # then
    assert response.status_code == 200
    assert response.json() == {"applied": 0, "duplicates": 2, "skipped": 0}
    assert state(message) == before
    assert (
        list(OptOut.objects.values_list("pk", "address", "revoked_at")) == optout_before
    )
    assert ProviderEvent.objects.count() == 2
    assert OPT_OUTS == [{"channel": "email", "address": EMAIL}]


def test_without_custom_args_the_message_is_found_by_sendgrids_message_id(
    message, tenant_client
):
    response = post_events(tenant_client, [event("delivered", None, tenant=None)])

    assert response.json() == {"applied": 1, "duplicates": 0, "skipped": 0}
    assert state(message)[0] == "delivered"


def test_an_event_for_no_known_message_is_skipped(message, tenant_client):
    response = post_events(
        tenant_client,
        [
            event("delivered", None, sg_message_id="unknown.filter0001"),
            "not an event",
            {"event": "delivered"},
        ],
    )

    assert response.json() == {"applied": 0, "duplicates": 0, "skipped": 3}
    assert state(message) == ("", None)
    assert not ProviderEvent.objects.exists()


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        (
            "bounce",
            {"type": "bounce", "reason": "550 5.1.1 The email account does not exist."},
        ),
        ("dropped", {"reason": "Bounced Address"}),
        ("spamreport", {}),
        ("unsubscribe", {}),
        ("group_unsubscribe", {"asm_group_id": 42}),
    ],
)
def test_events_that_opt_out(message, tenant_client, kind, fields):
    # when
    response = post_events(
        tenant_client,
        [event(kind, message, email="Jordan.Rivera@Example.com", **fields)],
    )

    # then
    assert response.json() == {"applied": 1, "duplicates": 0, "skipped": 0}
    assert state(message)[0] == kind
    optout = OptOut.objects.get()
    assert (optout.channel, optout.address, optout.source, optout.revoked_at) == (
        "email",
        EMAIL,
        OptOutSource.PROVIDER,
        None,
    )
    assert OPT_OUTS == [{"channel": "email", "address": EMAIL}]


def test_a_blocked_bounce_does_not_opt_out(message, tenant_client):
    response = post_events(
        tenant_client,
        [event("bounce", message, type="blocked", reason="IP blocklisted")],
    )

    assert response.json() == {"applied": 1, "duplicates": 0, "skipped": 0}
    assert state(message)[0] == "blocked"
    assert not OptOut.objects.exists()
    assert OPT_OUTS == []


# --- refusals ----------------------------------------------------------------------------------


def assert_unchanged(message: OutboundMessage) -> None:
    assert state(message) == ("", None)
    assert not ProviderEvent.objects.exists()
    assert not OptOut.objects.exists()
    assert OPT_OUTS == []


def test_a_signature_by_another_key_is_403(message, tenant_client):
    response = post_events(tenant_client, [event("spamreport", message)], key=OTHER_KEY)

    assert response.status_code == 403
    assert response.json() == {
        "error": "invalid_signature",
        "detail": "The event signature does not match the body.",
    }
    assert_unchanged(message)


def test_a_tampered_body_is_403(message, tenant_client):
    # given: signed for "delivered", the body then says "spamreport"
    timestamp = str(int(time.time()))
    signed_body = json.dumps([event("delivered", message)]).encode()
    signature = sign(signed_body, timestamp)

    # when
    response = post_events(
        tenant_client,
        body=signed_body.replace(b"delivered", b"spamreport"),
        timestamp=timestamp,
        signature=signature,
    )

    # then
    assert response.status_code == 403
    assert_unchanged(message)


@pytest.mark.parametrize(
    "signature", ["", "not-base64!", base64.b64encode(b"garbage").decode()]
)
def test_a_missing_or_garbage_signature_is_403(message, tenant_client, signature):
    response = post_events(
        tenant_client, [event("spamreport", message)], signature=signature
    )

    assert response.status_code == 403
    assert response.json()["error"] in {"missing_signature", "invalid_signature"}
    assert_unchanged(message)


# The header has whole seconds and the request takes time: a future stamp one second
# past the window (floor(now) + 301) can be inside it by the time it is checked.
@pytest.mark.parametrize("age_seconds", [301, -310, 3600])
def test_a_stale_or_future_timestamp_is_403(message, tenant_client, age_seconds):
    response = post_events(
        tenant_client,
        [event("spamreport", message)],
        timestamp=str(int(time.time()) - age_seconds),
    )

    assert response.status_code == 403
    assert response.json()["error"] == "stale_timestamp"
    assert_unchanged(message)


def test_an_unconfigured_key_is_403(message, tenant_client, settings):
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = ""

    response = post_events(tenant_client, [event("spamreport", message)])

    assert response.status_code == 403
    assert response.json()["error"] == "not_configured"
    assert_unchanged(message)


@pytest.mark.parametrize("body", [b"[{", b'{"event": "delivered"}', b"", b"null"])
def test_a_signed_body_that_is_not_a_json_list_is_400(message, tenant_client, body):
    response = post_events(tenant_client, body=body)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"
    assert_unchanged(message)


def test_a_body_that_is_not_utf8_cannot_be_verified(message, tenant_client):
    response = post_events(tenant_client, body=b"[\xff\xfe]")

    assert response.status_code == 403
    assert response.json()["error"] == "invalid_signature"
    assert_unchanged(message)


def test_a_body_over_one_mib_is_413(message, tenant_client):
    body = json.dumps(
        [event("spamreport", message, padding="x" * (1024 * 1024))]
    ).encode()

    response = post_events(tenant_client, body=body)

    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert_unchanged(message)


# --- brands ------------------------------------------------------------------------------------


def test_an_event_naming_another_brand_is_skipped_at_this_brands_host(
    message, tenant_client, other_tenant
):
    # given: bravo has an email with the same SendGrid id and the same address
    with tenant_context(other_tenant):
        bravo_message = sent_email()

    # when: alpha's host gets bravo's events (and one of its own)
    response = post_events(
        tenant_client,
        [
            event("spamreport", bravo_message, tenant="bravo"),
            event("delivered", None, tenant="bravo"),
            event("delivered", message),
        ],
    )

    # then
    assert response.json() == {"applied": 1, "duplicates": 0, "skipped": 2}
    assert state(message)[0] == "delivered"
    assert not OptOut.objects.exists()
    with tenant_context(other_tenant):
        assert state(bravo_message) == ("", None)
        assert not OptOut.objects.exists()
        assert not ProviderEvent.objects.exists()
    assert OPT_OUTS == []


def test_the_platform_host_routes_each_event_to_its_brand(
    tenant, message, other_tenant
):
    # given
    with tenant_context(other_tenant):
        bravo_message = sent_email()

    # when
    response = post_events(
        Client(HTTP_HOST=PLATFORM_HOST),
        [
            event("delivered", message, tenant="alpha"),
            event("spamreport", bravo_message, tenant="bravo"),
            event("delivered", None, tenant="public"),
            event("delivered", None, tenant="nosuchbrand"),
            event("delivered", None, tenant=None),
        ],
    )

    # then
    assert response.status_code == 200
    assert response.json() == {"applied": 2, "duplicates": 0, "skipped": 3}
    with tenant_context(tenant):
        assert state(message)[0] == "delivered"
        assert not OptOut.objects.exists()
    with tenant_context(other_tenant):
        assert state(bravo_message)[0] == "spamreport"
        assert list(OptOut.objects.values_list("channel", "address")) == [
            ("email", EMAIL)
        ]
    assert OPT_OUTS == [{"channel": "email", "address": EMAIL}]


def test_the_platform_host_checks_the_signature_too(tenant, message):
    response = post_events(
        Client(HTTP_HOST=PLATFORM_HOST), [event("spamreport", message)], key=OTHER_KEY
    )

    assert response.status_code == 403
    with tenant_context(tenant):
        assert_unchanged(message)
