"""Inbound events stop the cadence with the real handlers: a reply, STOP then START."""

from __future__ import annotations

import time_machine

from messaging.models import Channel, OptOut
from tests.messaging.test_inbound_sms import TWILIO_TOKEN, post_sms, sms
from tests.touchpoints.conftest import DAYTIME
from touchpoints import services
from touchpoints.models import CadenceEnrollment, TouchPoint, TouchPointStatus


def test_an_inbound_reply_stops_the_cadence(live, lead, tenant_client, settings):
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    services.cadence_start(lead=lead, now=DAYTIME)

    with time_machine.travel(DAYTIME, tick=False):
        response = post_sms(
            tenant_client, sms("What does ceramic tint cost?", sender=lead.phone)
        )

    assert response.status_code == 200
    lead.refresh_from_db()
    assert lead.status == "engaged"
    enrollment = CadenceEnrollment.objects.get(lead=lead)
    assert (enrollment.status, enrollment.stop_reason) == ("stopped", "replied")
    assert set(
        TouchPoint.objects.filter(lead=lead).values_list("status", "reason")
    ) == {(TouchPointStatus.CANCELLED, "The customer replied")}


def test_stop_stops_the_cadence_and_start_opts_back_in(
    live, lead, tenant_client, settings
):
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    services.cadence_start(lead=lead, now=DAYTIME)

    with time_machine.travel(DAYTIME, tick=False):
        post_sms(tenant_client, sms("STOP", sid="SM1", sender=lead.phone))
        stopped = set(
            TouchPoint.objects.filter(lead=lead).values_list("status", "reason")
        )
        post_sms(tenant_client, sms("start", sid="SM2", sender=lead.phone))

    assert stopped == {(TouchPointStatus.CANCELLED, "The customer opted out")}
    assert CadenceEnrollment.objects.get(lead=lead).stop_reason == "opted_out"
    opt_out = OptOut.objects.get(channel=Channel.SMS, address=lead.phone)
    assert opt_out.revoked_at is not None
