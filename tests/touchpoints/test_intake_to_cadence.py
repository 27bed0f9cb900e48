"""A signed webhook becomes a lead whose first SMS and email are recorded at once."""

from __future__ import annotations

import time_machine

from leads.models import Lead
from messaging.models import Channel, MessageStatus, OutboundMessage
from tests.leads.conftest import signed
from tests.leads.shopmonkey_fakes import fixture_bytes
from tests.touchpoints.conftest import DAYTIME
from touchpoints.models import CadenceEnrollment, TouchPoint, TouchPointStatus


def test_webhook_to_first_touches(
    live, crm, shopmonkey, tenant_client, django_capture_on_commit_callbacks
):
    with time_machine.travel(DAYTIME, tick=False):
        body, headers = signed(fixture_bytes("webhook_order_created.json"))

        with django_capture_on_commit_callbacks(execute=True):
            response = tenant_client.post(
                f"/webhooks/shopmonkey/{crm.public_id}/",
                data=body,
                content_type="application/json",
                **headers,
            )

    assert response.status_code == 202
    lead = Lead.objects.get()
    assert CadenceEnrollment.objects.get(lead=lead).status == "active"
    messages = OutboundMessage.objects.filter(lead=lead)
    assert sorted(messages.values_list("channel", "status")) == [
        (Channel.EMAIL, MessageStatus.RECORDED),
        (Channel.SMS, MessageStatus.RECORDED),
    ]
    assert messages.get(channel=Channel.SMS).to == "+15555550142"
    assert (
        TouchPoint.objects.filter(lead=lead, status=TouchPointStatus.SCHEDULED).count()
        == 11
    )
