"""SMS conversations: a customer's text reply gets the assistant's answer by SMS,
through the gate; staff replies to an SMS conversation go out by SMS too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from chat import services as chat_services
from chat.models import ChatMessage, MessageChannel, MessageRole, SessionMode
from messaging import inbound
from messaging.models import MessageKind, MessageStatus, OutboundMessage
from tests.factories import SuperUserFactory
from tests.touchpoints.conftest import set_outbound_mode


@pytest.fixture
def clock():
    """Monday 10:00 at the San Diego store: inside the hours texts may go out."""
    with time_machine.travel(datetime(2026, 11, 16, 18, 0, tzinfo=UTC), tick=False):
        yield


@pytest.fixture
def live(tenant, settings, clock):
    settings.MESSAGING_BACKEND = "outbox"
    settings.AI_PROVIDER = "scripted"
    set_outbound_mode(tenant, "live")
    return tenant


def text_in(body: str, sid: str, phone: str):
    return inbound.inbound_sms_receive(
        provider_message_id=sid, from_number=phone, to_number="+16195550100", body=body
    )


def test_a_text_reply_is_answered_by_sms_through_the_gate(
    live, session, customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        text_in("How much is ceramic tint?", "SM1", customer.phone)
    question = ChatMessage.objects.get(session=session, role=MessageRole.CUSTOMER)
    assert question.channel == MessageChannel.SMS
    answer = ChatMessage.objects.get(session=session, role=MessageRole.ASSISTANT)
    assert "$449.00" in answer.body
    sms = OutboundMessage.objects.get(kind=MessageKind.ASSISTANT)
    assert sms.to == customer.phone
    assert sms.body == answer.body
    assert sms.status == MessageStatus.RECORDED


def test_a_redelivered_text_is_answered_once(
    live, session, customer, django_capture_on_commit_callbacks
):
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            text_in("How much is ceramic tint?", "SM1", customer.phone)
    assert OutboundMessage.objects.filter(kind=MessageKind.ASSISTANT).count() == 1


def test_in_disabled_mode_the_answer_is_blocked_not_sent(
    live, tenant, session, customer, django_capture_on_commit_callbacks
):
    set_outbound_mode(tenant, "disabled")
    with django_capture_on_commit_callbacks(execute=True):
        text_in("How much is ceramic tint?", "SM1", customer.phone)
    sms = OutboundMessage.objects.get(kind=MessageKind.ASSISTANT)
    assert (sms.status, sms.block_reason) == (MessageStatus.BLOCKED, "mode_disabled")


def test_in_quiet_hours_the_answer_is_blocked(
    live, session, customer, django_capture_on_commit_callbacks
):
    early = datetime(2026, 11, 16, 14, 0, tzinfo=UTC)  # 06:00 at the store
    with (
        time_machine.travel(early, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        text_in("How much is ceramic tint?", "SM1", customer.phone)
    sms = OutboundMessage.objects.get(kind=MessageKind.ASSISTANT)
    assert (sms.status, sms.block_reason) == (MessageStatus.BLOCKED, "quiet_hours")


def test_staff_answer_an_sms_conversation_by_sms(
    live, session, customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        text_in("Can I talk to a person?", "SM1", customer.phone)
    session.refresh_from_db()
    assert session.mode == SessionMode.HUMAN
    chat_services.staff_reply(
        session=session, user=SuperUserFactory(), text="Sam here, how can I help?"
    )
    staff_sms = OutboundMessage.objects.get(kind=MessageKind.STAFF)
    assert staff_sms.body == "Sam here, how can I help?"
    assert staff_sms.to == customer.phone
