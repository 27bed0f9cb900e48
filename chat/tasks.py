"""Chat work done by the job worker."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django_tenants.utils import schema_context

from chat import services


def sms_conversation_answer(*, schema_name: str, lead_id: int, inbound_id: int) -> str:
    """A customer's SMS reply joins their conversation; the assistant answers by SMS."""
    with schema_context(schema_name):
        prepared = services.sms_message_record(lead_id=lead_id, inbound_id=inbound_id)
    if prepared is None:
        return "nothing to answer"
    from chat.ai import service as ai_service

    answer = async_to_sync(ai_service.assistant_answer)(
        schema_name=schema_name,
        session_id=prepared.session_id,
        customer_message_id=prepared.message_id,
        channel="sms",
    )
    if answer is None:
        return "left for staff"
    with schema_context(schema_name):
        sent = services.sms_answer_send(message_id=answer.pk)
    return f"answered by SMS: {sent.status}"
