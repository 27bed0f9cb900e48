"""Property tests: nothing goes out that the rules forbid, whatever the combination."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import transaction
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from leads.models import LeadStatus
from locations.time_zones import US_ZONES
from messaging import services
from messaging.gate import IMMEDIATE_KINDS, PROACTIVE_KINDS, GateFacts, gate_decide
from messaging.models import (
    Channel,
    MessageKind,
    MessageStatus,
    MessagingPolicy,
    OptOut,
    OutboundMessage,
    WhitelistEntry,
)
from messaging.quiet_hours import (
    LEGAL_END,
    LEGAL_START,
    STRICT_STATES,
    recipient_window,
    state_of_phone,
)
from tenants.models import OutboundMode
from tests.factories import LeadFactory, LocationFactory
from tests.messaging_fakes import SendGridTransport, TwilioTransport, install
from tests.touchpoints.conftest import set_outbound_mode

ZONES = list(US_ZONES)
STATES = ["CA", "NY", "TX", "FL", "OK", "AZ", "HI", ""]
# Area codes of several states: CA, FL, OK, NY, HI, AZ, TX, and the 555 test range.
PHONES = [
    "+16195550134",
    "+13055550134",
    "+14055550134",
    "+12125550134",
    "+18085550134",
    "+16025550134",
    "+12145550134",
    "+15555550142",
    "",
]
EMAILS = ["a@example.com", "b@example.com", "c@example.com", ""]

instants = st.datetimes(
    # hypothesis wants naive bounds and adds the zone itself
    min_value=datetime(2025, 1, 1),  # noqa: DTZ001
    max_value=datetime(2030, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
# DST switch days in the US are Sundays in March and November: aim a share of examples there.
dst_instants = st.builds(
    lambda year, month, day, minutes: (
        datetime(year, month, day, tzinfo=UTC) + timedelta(minutes=minutes)
    ),
    st.integers(2025, 2030),
    st.sampled_from([3, 11]),
    st.integers(1, 14),
    st.integers(0, 48 * 60),
)
any_instant = st.one_of(instants, dst_instants)


def _local_ok(instant: datetime, zone: str, start: time, end: time) -> bool:
    return start <= instant.astimezone(ZoneInfo(zone)).time().replace(tzinfo=None) < end


# --- quiet hours ----------------------------------------------------------------------------------


@given(
    instant=any_instant,
    zone=st.sampled_from(ZONES),
    state=st.sampled_from(STATES),
    phone=st.sampled_from(PHONES),
    start_hour=st.integers(8, 12),
    end_hour=st.integers(13, 21),
)
@settings(max_examples=400, deadline=None)
def test_allowed_means_inside_the_window_everywhere_the_recipient_may_be(
    instant, zone, state, phone, start_hour, end_hour
):
    window = recipient_window(
        location_zone=zone,
        location_state=state,
        phone=phone,
        start=time(start_hour),
        end=time(end_hour),
    )

    # never wider than the law, stricter in FL and OK
    assert window.start >= LEGAL_START
    assert window.end <= LEGAL_END
    if {state, state_of_phone(phone)} & set(STRICT_STATES):
        assert window.end <= time(20)
    assert zone in window.zones
    if window.allows(instant):
        for each in window.zones:
            assert _local_ok(instant, each, window.start, window.end)
        assert _local_ok(instant, zone, time(8), time(21))
    else:
        assert any(
            not _local_ok(instant, each, window.start, window.end)
            for each in window.zones
        )


@given(
    instant=any_instant,
    zone=st.sampled_from(ZONES),
    state=st.sampled_from(STATES),
    phone=st.sampled_from(PHONES),
)
@settings(max_examples=200, deadline=None)
def test_deferred_messages_go_at_the_next_allowed_minute(instant, zone, state, phone):
    window = recipient_window(location_zone=zone, location_state=state, phone=phone)
    assume(
        len(window.zones) == 1 or not window.allows(instant)
    )  # several zones: keep the search small

    opens = window.next_allowed(instant)

    assert opens >= instant
    assert window.allows(opens)
    assert opens.second == 0
    assert opens.microsecond == 0
    # no allowed whole minute before it
    minute = opens - timedelta(minutes=1)
    while minute >= instant:
        assert not window.allows(minute)
        minute -= timedelta(minutes=1)
    # a message sent then expires before the window closes
    left = window.seconds_left(opens)
    assert left > 0
    assert window.allows(opens + timedelta(seconds=left - 1))
    assert not window.allows(opens + timedelta(seconds=left + 59))


# --- the gate, as a pure function -------------------------------------------------------------------

facts_strategy = st.builds(
    GateFacts,
    mode=st.sampled_from([*OutboundMode.values, "", "typo"]),
    channel=st.sampled_from(Channel.values),
    kind=st.sampled_from(MessageKind.values),
    address=st.sampled_from(["", "+16195550134", "a@example.com"]),
    lead_email=st.sampled_from([*EMAILS, "A@Example.com"]),
    whitelist=st.frozensets(st.sampled_from(EMAILS[:3]), max_size=3),
    provider_configured=st.booleans(),
    opted_out=st.booleans(),
    lead_open=st.booleans(),
    window=st.one_of(
        st.none(),
        st.builds(
            lambda zone, state, phone: recipient_window(
                location_zone=zone, location_state=state, phone=phone
            ),
            st.sampled_from(ZONES),
            st.sampled_from(STATES),
            st.sampled_from(PHONES),
        ),
    ),
    now=any_instant,
    sent_last_24h=st.integers(0, 6),
    daily_cap=st.integers(1, 5),
    allow_opted_out=st.booleans(),
)


@given(facts=facts_strategy)
@settings(max_examples=1500, deadline=None)
def test_the_gate_lets_through_only_what_every_rule_allows(facts):
    allowed = gate_decide(facts) == ""

    rules = [
        facts.provider_configured,
        facts.mode in (OutboundMode.WHITELIST, OutboundMode.LIVE),
        facts.mode != OutboundMode.WHITELIST
        or (bool(facts.whitelist) and facts.lead_email.lower() in facts.whitelist),
        bool(facts.address),
        not facts.opted_out or (facts.allow_opted_out and facts.channel == Channel.SMS),
        facts.kind not in PROACTIVE_KINDS or facts.lead_open,
        facts.kind in IMMEDIATE_KINDS
        or (facts.window is not None and facts.window.allows(facts.now)),
        facts.kind not in PROACTIVE_KINDS or facts.sent_last_24h < facts.daily_cap,
    ]
    assert allowed == all(rules)


# --- the gate, end to end: the database, the SDKs, the provider's ledger ----------------------------


@given(
    mode=st.sampled_from(OutboundMode.values),
    whitelisted=st.frozensets(st.sampled_from(EMAILS[:3]), max_size=3),
    env_whitelist=st.sampled_from([[], ["c@example.com"]]),
    opted_out_phones=st.frozensets(st.sampled_from(PHONES[:3]), max_size=2),
    providers=st.sampled_from(["outbox", "both", "sms_only", "email_only", "none"]),
    instant=any_instant,
    recipients=st.lists(
        st.tuples(st.sampled_from(EMAILS), st.sampled_from([*PHONES[:3], ""])),
        min_size=1,
        max_size=4,
    ),
    kind=st.sampled_from(
        [
            MessageKind.CADENCE,
            MessageKind.REMINDER,
            MessageKind.CONFIRMATION,
            MessageKind.STAFF,
        ]
    ),
    lead_lost=st.booleans(),
)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_nothing_reaches_a_provider_that_the_rules_forbid(
    tenant,
    settings,
    monkeypatch,
    mode,
    whitelisted,
    env_whitelist,
    opted_out_phones,
    providers,
    instant,
    recipients,
    kind,
    lead_lost,
):
    with transaction.atomic():
        # given: the brand's mode, whitelist, opt-outs and providers
        set_outbound_mode(tenant, mode)
        settings.LEAD_EMAIL_WHITELIST = env_whitelist
        twilio, sendgrid = TwilioTransport(), SendGridTransport()
        install(monkeypatch, settings, twilio=twilio, sendgrid=sendgrid)
        settings.MESSAGING_BACKEND = "outbox" if providers == "outbox" else "providers"
        if providers in ("email_only", "none"):
            settings.TWILIO_AUTH_TOKEN = ""
        if providers in ("sms_only", "none"):
            settings.SENDGRID_API_KEY = ""
        for email in whitelisted:
            WhitelistEntry.objects.create(email=email)
        for phone in opted_out_phones:
            OptOut.objects.create(
                channel=Channel.SMS, address=phone, source="sms_keyword"
            )
        location = LocationFactory(time_zone="America/Los_Angeles", region="CA")
        leads = []
        for email, phone in recipients:
            if not email and not phone:
                continue
            lead = LeadFactory(location=location, email=email, phone=phone)
            if lead_lost:
                lead.status = LeadStatus.LOST
            leads.append(lead)
        assume(leads)
        policy = MessagingPolicy.objects.get_or_create(singleton=True)[0]

        # when: one SMS and one email to each
        requests = [
            services.SendRequest(
                channel=channel, kind=kind, lead=lead, body="Hello", subject="Hi"
            )
            for lead in leads
            for channel in Channel.values
        ]
        messages = services.messages_send(requests, now=instant)

        # then: every message is recorded, and only allowed ones were attempted
        assert len(messages) == len(requests)
        whitelist = {e.lower() for e in whitelisted} | set(env_whitelist)
        for message in OutboundMessage.objects.select_related("lead", "location"):
            lead = message.lead
            window = services.recipient_window_for(
                location=message.location, phone=lead.phone, policy=policy
            )
            left_the_building = message.status in (
                MessageStatus.SENT,
                MessageStatus.SENDING,
                MessageStatus.UNKNOWN,
            )
            attempted = message.status != MessageStatus.BLOCKED
            if attempted:
                assert mode in (OutboundMode.WHITELIST, OutboundMode.LIVE)
                if mode == OutboundMode.WHITELIST:
                    assert lead.email
                    assert lead.email.lower() in whitelist
                assert message.to
                if message.channel == Channel.SMS:
                    assert message.to not in opted_out_phones
                assert window.allows(instant)
                if kind in PROACTIVE_KINDS:
                    assert lead.status != LeadStatus.LOST
            if left_the_building:
                assert providers != "outbox"
        # the providers saw exactly the attempted messages, each once
        attempted_sms = [
            m.to
            for m in OutboundMessage.objects.filter(channel=Channel.SMS).exclude(
                status=MessageStatus.BLOCKED
            )
        ]
        attempted_email = [
            m.to
            for m in OutboundMessage.objects.filter(channel=Channel.EMAIL).exclude(
                status=MessageStatus.BLOCKED
            )
        ]
        if providers != "outbox":
            assert sorted(r["data"]["To"] for r in twilio.requests) == sorted(
                attempted_sms
            )
            assert sorted(
                r["payload"]["personalizations"][0]["to"][0]["email"]
                for r in sendgrid.requests
            ) == sorted(attempted_email)
        else:
            assert twilio.requests == []
            assert sendgrid.requests == []
        transaction.set_rollback(True)
