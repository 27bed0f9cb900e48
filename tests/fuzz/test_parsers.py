"""Property tests of the parsers and normalisers that read what strangers send:
any input gives a result or the module's own typed error, never anything else."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import phonenumbers
import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from hypothesis import assume, given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from leadorch.errors import ApplicationError
from leadorch.phones import E164_REGEX, format_phone, normalize_phone
from leads import shopmonkey
from leads.shopmonkey import (
    Customer,
    Order,
    ShopMonkeyClient,
    ShopMonkeyError,
    ShopMonkeyResponseError,
    Vehicle,
    WebhookEvent,
)
from leads.webhooks import SignatureError, webhook_parse, webhook_verify
from messaging import inbound
from messaging.inbound import keyword_of
from tests.fuzz.strategies import FUZZ, json_objects, json_values
from tests.leads.shopmonkey_fakes import WEBHOOK_SECRET
from tests.messaging.test_sendgrid_events import SIGNING_KEY, public_key_b64


def outcome(expected: type[Exception], function, *args, **kwargs):
    """``(result, None)``, or ``(None, error)`` when ``function`` raised ``expected``;
    anything else propagates and fails the test."""
    try:
        return function(*args, **kwargs), None
    except expected as error:
        return None, error


# --- ShopMonkey records and webhook bodies ----------------------------------------------


@FUZZ
@given(json_values())
def test_records_parse_or_raise_the_response_error(value):
    for parse in (
        Order.from_api,
        Customer.from_api,
        Vehicle.from_api,
        WebhookEvent.from_body,
    ):
        try:
            parsed = parse(value)
        except ShopMonkeyResponseError:
            continue
        assert parsed.id if hasattr(parsed, "id") else parsed.record_id


@FUZZ
@given(json_objects, json_objects)
def test_webhook_bodies_with_an_order_parse_or_raise(body, data):
    body = {**body, "data": {**data, "id": data.get("id", "x")}}
    event, error = outcome(ShopMonkeyResponseError, WebhookEvent.from_body, body)
    if error is not None:
        return
    assert event.table
    assert event.operation == event.operation.upper()
    assert isinstance(event.record_version, str)
    order, error = outcome(ShopMonkeyResponseError, Order.from_api, event.data)
    if error is not None:
        return
    assert isinstance(order.is_complete, bool)
    assert order.created_at is None or order.created_at.tzinfo is not None


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=300), json_values().map(lambda v: json.dumps(v).encode())
    )
)
def test_webhook_parse_gives_an_event_or_an_application_error(body):
    event, error = outcome(ApplicationError, webhook_parse, body)
    if error is not None:
        assert error.code in {"invalid_json", "invalid_body"}
    else:
        assert isinstance(event, WebhookEvent)


@FUZZ
@given(st.one_of(st.text(max_size=40), json_values(max_leaves=3)))
def test_parse_datetime_is_aware_or_none(value):
    parsed = shopmonkey.parse_datetime(value)
    assert parsed is None or parsed.tzinfo is not None


# --- webhook signatures -------------------------------------------------------------------

header_values = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="v1,= +/abcXYZ0123456789", max_size=80),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "v1,", "v1,,", "v2,abc", "v1,!!!"]),
)
signature_headers = st.fixed_dictionaries(
    {},
    optional={
        "webhook-id": header_values,
        "webhook-timestamp": header_values,
        "webhook-signature": header_values,
        "x-attempt": header_values,
    },
)
secrets_ = st.one_of(
    st.just(WEBHOOK_SECRET),
    st.just(""),
    st.text(max_size=40),
    st.binary(min_size=1, max_size=32).map(
        lambda b: "whsec_" + base64.b64encode(b).decode()
    ),
)


@FUZZ
@given(secrets_, st.binary(max_size=200), signature_headers)
def test_webhook_verify_raises_only_signature_errors(secret, body, headers):
    connection = SimpleNamespace(webhook_secret=secret)
    _, error = outcome(
        SignatureError,
        webhook_verify,
        connection=connection,
        body=body,
        headers=headers,
    )
    assert error is not None, f"An unsigned body verified: {body!r} {headers!r}"
    assert error.code in {"no_secret", "invalid_signature", "stale_timestamp"}


@FUZZ
@given(
    st.text(max_size=200),
    st.text(min_size=1, max_size=30),
    st.binary(min_size=1, max_size=40),
)
def test_a_signed_body_verifies_and_any_change_does_not(text, msg_id, flip):
    assume("\x00" not in msg_id and msg_id.strip() == msg_id and " " not in msg_id)
    body = text.encode()
    now = datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(WEBHOOK_SECRET).sign(msg_id, now, text),
    }
    try:
        msg_id.encode()
    except UnicodeEncodeError:
        assume(False)
    connection = SimpleNamespace(webhook_secret=WEBHOOK_SECRET)
    webhook_verify(connection=connection, body=body, headers=headers)
    changed = body + flip
    with pytest.raises(SignatureError):
        webhook_verify(connection=connection, body=changed, headers=headers)


# --- the ShopMonkey client on whatever the API answers ------------------------------------

responses = st.tuples(
    st.sampled_from(
        [200, 201, 204, 301, 400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503]
    ),
    st.one_of(
        st.binary(max_size=100),
        json_values().map(lambda v: json.dumps(v).encode()),
        json_objects.map(lambda o: json.dumps({"success": True, "data": o}).encode()),
    ),
    st.dictionaries(
        st.sampled_from(["retry-after", "content-type", "x-other"]),
        st.one_of(
            st.sampled_from(
                [
                    "text/html",
                    "application/json",
                    "1.5",
                    "Wed, 21 Oct 2015 07:28:00 GMT",
                    "-1",
                    "nan",
                ]
            ),
            st.text(
                alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30
            ),
        ),
        max_size=3,
    ),
)


@FUZZ
@given(responses)
def test_the_client_returns_records_or_raises_its_own_errors(answer):
    status, content, headers = answer

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers=headers)

    client = ShopMonkeyClient(
        api_key="sk-fuzz",
        base_url="https://shopmonkey.test",
        transport=httpx.MockTransport(handler),
        max_attempts=2,
        sleep=lambda seconds: None,
    )
    with client:
        for call in (
            lambda: client.get_order("o1"),
            lambda: client.get_customer("c1"),
            lambda: client.get_vehicle("v1"),
            lambda: client.list_orders(where={"x": 1}),
            lambda: list(client.iter_order_pages(max_pages=2)),
            lambda: client.create_appointment({"name": "x"}),
        ):
            with contextlib.suppress(ShopMonkeyError):
                call()


# --- phones ---------------------------------------------------------------------------------

phone_like = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789 +-().ext#*x", max_size=30),
    st.from_regex(r"\A\+?1?[ .-]?\(?[2-9]\d{2}\)?[ .-]?[2-9]\d{2}[ .-]?\d{4}\Z"),
    st.from_regex(r"\A\+[1-9]\d{6,16}\Z"),
)
regions = st.sampled_from(
    [None, "US", "CA", "GB", "DE", "BR", "IN", "ZZ", "", "us", "XX"]
)


@FUZZ
@given(phone_like, regions)
def test_normalize_phone_gives_e164_or_a_validation_error(raw, region):
    result, error = outcome(
        ValidationError, normalize_phone, raw, region=region or None
    )
    if error is not None:
        assert error.code == "invalid_phone"
        return
    if not raw.strip():
        assert result == ""
        return
    assert re.fullmatch(E164_REGEX, result), result
    # Stable: a stored number normalises to itself, and prints.
    assert normalize_phone(result) == result
    assert format_phone(result)
    assert phonenumbers.is_possible_number(phonenumbers.parse(result, None))


# --- SMS keywords -------------------------------------------------------------------------------

KEYWORDS = {"stop", "start", "help", ""}


@FUZZ
@given(st.text(max_size=60))
def test_keyword_of_any_text_is_a_known_keyword_or_nothing(body):
    assert keyword_of(body) in KEYWORDS


@FUZZ
@given(
    st.sampled_from(
        sorted(inbound.STOP_KEYWORDS | inbound.START_KEYWORDS | inbound.HELP_KEYWORDS)
    ),
    st.text(alphabet=" \t\n.!?,;:-_*\"'()", max_size=5),
    st.text(alphabet=" \t\n.!?,;:-_*\"'()", max_size=5),
    st.booleans(),
)
def test_a_keyword_with_punctuation_case_and_space_around_is_recognised(
    word, before, after, upper
):
    expected = (
        "stop"
        if word in inbound.STOP_KEYWORDS
        else "start"
        if word in inbound.START_KEYWORDS
        else "help"
    )
    text = word.upper() if upper else word.title()
    assert keyword_of(f"{before}{text}{after}") == expected


@FUZZ
@given(st.sampled_from(sorted(inbound.STOP_KEYWORDS)), st.text(min_size=1, max_size=20))
def test_a_keyword_inside_a_sentence_is_not_an_opt_out(word, rest):
    assume(re.search(r"[^\W_]", rest))  # more than punctuation follows
    assert keyword_of(f"{word} {rest}") != "stop"


# --- provider signatures and bodies -------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=200), st.text(max_size=80), st.text(max_size=20))
def test_sendgrid_verification_raises_only_signature_errors(body, signature, timestamp):
    for key in (public_key_b64(SIGNING_KEY), "not a key", ""):
        with (
            override_settings(SENDGRID_WEBHOOK_PUBLIC_KEY=key),
            pytest.raises(inbound.SignatureError),
        ):
            inbound.sendgrid_signature_verify(
                body=body, signature=signature, timestamp=timestamp
            )


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200), json_values().map(lambda v: json.dumps(v).encode())
    )
)
def test_sendgrid_bodies_parse_to_a_list_or_an_application_error(body):
    events, error = outcome(ApplicationError, inbound.sendgrid_events_parse, body)
    if error is not None:
        assert error.code == "invalid_json"
    else:
        assert isinstance(events, list)


# What the view passes: the request's host (Django refuses one that is not a valid host
# name) and the brand's primary domain.
hostnames = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}\.){0,3}[a-z0-9]{1,10}\Z")


@FUZZ
@given(
    st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5),
    st.text(max_size=40),
    st.lists(hostnames, max_size=3),
    st.text(max_size=30),
)
def test_twilio_verification_raises_only_signature_errors(
    params, signature, hosts, path
):
    with (
        override_settings(TWILIO_AUTH_TOKEN="twilio-fuzz-token"),
        pytest.raises(inbound.SignatureError),
    ):
        inbound.twilio_signature_verify(
            hosts=hosts, path="/" + path, params=params, signature=signature
        )
