"""The webhook endpoints on random requests: a 2xx or a 4xx, never a 500.

Each body is tried twice over: unsigned (it must stop at the signature check) and
signed with the configured secret, so that the random fields reach the parsing and
the database behind it.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from django.test import Client
from hypothesis import example, given
from hypothesis import note as hypothesis_note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from twilio.request_validator import RequestValidator

from tests.conftest import PLATFORM_HOST, host_of
from tests.factories import LeadFactory
from tests.fuzz.strategies import FUZZ_SLOW, json_objects, json_values
from tests.leads.conftest import make_connection, signed
from tests.messaging.test_sendgrid_events import SIGNING_KEY, public_key_b64, sign

TWILIO_TOKEN = "twilio-fuzz-auth-token"


def note(text: str) -> None:
    """Shown with a failing example (outside hypothesis: nothing)."""
    if currently_in_test_context():
        hypothesis_note(text)


field_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "STOP",
            " stop! ",
            "START",
            "HELP",
            "+16195550141",
            "(619) 555-0141",
            "SM" + "0" * 32,
            "delivered",
            "undelivered",
            "failed",
            "21610",
            "\x00",
        ]
    ),
)
forms = st.dictionaries(
    st.one_of(
        st.sampled_from(
            [
                "MessageSid",
                "SmsSid",
                "From",
                "To",
                "Body",
                "MessageStatus",
                "SmsStatus",
                "ErrorCode",
                "AccountSid",
            ]
        ),
        st.text(max_size=8),
    ),
    field_text,
    max_size=8,
)


@pytest.fixture
def messaging(tenant, settings):
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = public_key_b64(SIGNING_KEY)
    settings.MESSAGING_BACKEND = "outbox"
    settings.INBOUND_REPLY_HANDLERS = []
    settings.OPT_OUT_HANDLERS = []
    LeadFactory(phone="+16195550141")
    return Client(HTTP_HOST=host_of(tenant))


def post_form(client: Client, path: str, form: dict[str, str], *, sign_it: bool):
    note(f"POST {path} form={form!r} signed={sign_it}")
    headers = {}
    if sign_it:
        url = f"http://{client.defaults['HTTP_HOST']}{path}"
        headers["HTTP_X_TWILIO_SIGNATURE"] = RequestValidator(
            TWILIO_TOKEN
        ).compute_signature(url, form)
    return client.post(
        path,
        data=urlencode(form),
        content_type="application/x-www-form-urlencoded",
        **headers,
    )


@FUZZ_SLOW
@given(form=forms)
@example(form={"MessageSid": "\x00", "From": "0"})
@example(form={"MessageSid": "SM1", "From": "+16195550141", "Body": "hi\x00"})
def test_twilio_inbound_sms_never_fails(messaging, form):
    unsigned = post_form(messaging, "/webhooks/twilio/sms", form, sign_it=False)
    assert unsigned.status_code == 403
    response = post_form(messaging, "/webhooks/twilio/sms", form, sign_it=True)
    assert response.status_code in {200, 400}, response.content


@FUZZ_SLOW
@given(form=forms)
@example(form={"MessageSid": "\x00", "MessageStatus": "sent"})
@example(form={"MessageSid": "SM1", "MessageStatus": "\x00", "ErrorCode": "\x00"})
def test_twilio_status_callback_never_fails(messaging, form):
    unsigned = post_form(messaging, "/webhooks/twilio/status", form, sign_it=False)
    assert unsigned.status_code == 403
    response = post_form(messaging, "/webhooks/twilio/status", form, sign_it=True)
    assert response.status_code in {200, 204, 400}, response.content


@FUZZ_SLOW
@given(
    content=st.binary(max_size=200),
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""]
    ),
)
def test_twilio_webhooks_on_raw_garbage_never_fail(messaging, content, content_type):
    for path in ("/webhooks/twilio/sms", "/webhooks/twilio/status"):
        response = messaging.post(path, data=content, content_type=content_type)
        assert response.status_code in {400, 403}, response.content


sendgrid_events = st.one_of(
    json_values(),
    st.lists(
        st.one_of(
            json_objects,
            st.fixed_dictionaries(
                {
                    "event": st.sampled_from(
                        ["delivered", "bounce", "dropped", "open", "unsubscribe", "x"]
                    ),
                },
                optional={
                    "email": field_text,
                    "tenant": st.one_of(
                        st.sampled_from(["alpha", "bravo", "public", ""]), field_text
                    ),
                    "message": field_text,
                    "sg_message_id": field_text,
                    "sg_event_id": field_text,
                    "type": json_values(max_leaves=2),
                },
            ),
        ),
        max_size=4,
    ),
)


def post_events(client: Client, body: bytes, *, sign_it: bool, timestamp: str = ""):
    note(f"POST events body={body!r} signed={sign_it}")
    timestamp = timestamp or str(int(time.time()))
    headers = {"HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": timestamp}
    if sign_it:
        headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE"] = sign(body, timestamp)
    return client.post(
        "/webhooks/sendgrid/events",
        data=body,
        content_type="application/json",
        **headers,
    )


@FUZZ_SLOW
@given(events=sendgrid_events, platform=st.booleans())
@example(events=[{"event": "bounce", "email": "a\x00@example.com"}], platform=False)
@example(events=[{"event": "delivered", "sg_event_id": "e\x00"}], platform=False)
@example(events=[{"event": "open", "sg_message_id": "\x00.x"}], platform=False)
@example(events=[{"event": "open", "message": "\x00"}], platform=False)
@example(events=[{"event": "open", "tenant": "alpha\x00"}], platform=True)
def test_sendgrid_events_never_fail(messaging, events, platform):
    client = Client(HTTP_HOST=PLATFORM_HOST) if platform else messaging
    body = json.dumps(events).encode()
    assert post_events(client, body, sign_it=False).status_code == 403
    response = post_events(client, body, sign_it=True)
    assert response.status_code in {200, 400}, response.content


@FUZZ_SLOW
@given(body=st.binary(max_size=200), timestamp=st.text(max_size=12))
def test_sendgrid_on_raw_garbage_never_fails(messaging, body, timestamp):
    note(f"body={body!r} timestamp={timestamp!r}")
    headers = {"HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": timestamp}
    for sign_it in (False, True):
        if sign_it:
            headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE"] = sign(
                body, timestamp or "0"
            )
        response = messaging.post(
            "/webhooks/sendgrid/events",
            data=body,
            content_type="application/json",
            **headers,
        )
        assert response.status_code in {400, 403, 413}, response.content


# --- ShopMonkey -----------------------------------------------------------------------


@pytest.fixture
def crm(tenant):
    return make_connection(), Client(HTTP_HOST=host_of(tenant))


@FUZZ_SLOW
@given(body=st.one_of(json_objects, json_values()), data=json_objects)
@example(
    body={"table": "order", "operation": "INSERT", "data": {"id": "\x00"}}, data={}
)
@example(body={"table": "\x00", "operation": "\x00", "data": {"id": "1"}}, data={})
def test_shopmonkey_webhook_on_signed_random_json_never_fails(crm, body, data):
    connection, client = crm
    if isinstance(body, dict) and "data" not in body:
        body = {**body, "data": {**data, "id": data.get("id") or "order-1"}}
    raw, headers = signed(json.dumps(body).encode())
    response = client.post(
        f"/webhooks/shopmonkey/{connection.public_id}/",
        data=raw,
        content_type="application/json",
        **headers,
    )
    assert response.status_code in {200, 202, 400}, response.content


@FUZZ_SLOW
@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "HTTP_WEBHOOK_ID",
                "HTTP_WEBHOOK_TIMESTAMP",
                "HTTP_WEBHOOK_SIGNATURE",
                "HTTP_X_ATTEMPT",
            ]
        ),
        st.text(alphabet=st.characters(max_codepoint=255), max_size=40),
        max_size=4,
    ),
)
def test_shopmonkey_webhook_on_unsigned_garbage_never_fails(crm, body, headers):
    connection, client = crm
    response = client.post(
        f"/webhooks/shopmonkey/{connection.public_id}/",
        data=body,
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 401, response.content
