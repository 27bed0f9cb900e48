"""What customers are told about their appointments: confirmations, changes, reminders, rebooking."""

from __future__ import annotations

from datetime import datetime

from appointments.models import (
    Appointment,
    ScheduledKind,
    ScheduledMessage,
    ScheduledStatus,
)
from chat import services as chat_services
from leadorch.phones import format_phone
from messaging import services as messaging
from messaging.models import Channel, MessageKind, OutboundMessage


def _when(appointment: Appointment) -> str:
    local = appointment.starts_at.astimezone(appointment.location.zone)
    return f"{local:%A, %B} {local.day} at {local:%I:%M %p}".replace(" 0", " ")


def _price(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def _change_link(appointment: Appointment, host: str) -> str:
    return messaging.public_url(
        host=host,
        path=chat_services.chat_links_create(leads=[appointment.lead])[
            appointment.lead_id
        ],
    )


def confirmation_texts(
    appointment: Appointment, *, event: str, link: str
) -> dict[str, tuple[str, str]]:
    """(subject, body) per channel for a booking, a move or a cancellation."""
    location = appointment.location
    when, service, price = (
        _when(appointment),
        appointment.service.name,
        _price(appointment.price_cents),
    )
    first = appointment.lead.first_name or "there"
    if event == "cancelled":
        sms = f"{location.name}: your {service} on {when} is cancelled. Book again any time: {link}"
        email = (
            f"Hi {first},\n\nYour appointment for {service} on {when} at {location.name} is cancelled.\n\n"
            f"To pick another time: {link}\n\n{location.name} - {format_phone(location.phone)}"
        )
        return {
            Channel.SMS: ("", sms),
            Channel.EMAIL: (f"Cancelled: {service} on {when}", email),
        }
    verb = "moved to" if event == "moved" else "booked for"
    sms = (
        f"{location.name}: you're {verb} {when} - {service} ({price}). {location.address}. "
        f"Need to change it? {link}"
    )
    email = (
        f"Hi {first},\n\nYou're {verb} {when}.\n\nService: {service}\nPrice: {price}\n"
        f"Where: {location.name}, {location.address}\nPhone: {format_phone(location.phone)}\n\n"
        f"To change or cancel: {link}\n\nSee you then!\n{location.name}"
    )
    return {
        Channel.SMS: ("", sms),
        Channel.EMAIL: (f"Confirmed: {service} on {when}", email),
    }


def confirmation_send(*, appointment: Appointment, event: str) -> list[OutboundMessage]:
    """Tell the customer about a booking, move or cancellation, by SMS and email, through the gate."""
    context = messaging.batch_context()
    link = _change_link(appointment, context.tenant_host)
    texts = confirmation_texts(appointment, event=event, link=link)
    requests = [
        messaging.SendRequest(
            channel=channel,
            kind=MessageKind.CONFIRMATION,
            lead=appointment.lead,
            subject=subject,
            body=body,
        )
        for channel, (subject, body) in texts.items()
    ]
    return messaging.messages_send(requests, context=context)


def scheduled_text(message: ScheduledMessage, link: str) -> tuple[str, str]:
    appointment = message.appointment
    location, when, service = (
        appointment.location,
        _when(appointment),
        appointment.service.name,
    )
    if message.kind == ScheduledKind.REMINDER:
        if message.channel == Channel.SMS:
            return (
                "",
                f"Reminder from {location.name}: {service} tomorrow, {when}. {location.address}. Change it: {link}",
            )
        first = appointment.lead.first_name or "there"
        body = (
            f"Hi {first},\n\nSee you tomorrow, {when}, for {service} at {location.name}, {location.address}.\n\n"
            f"To change it: {link}\n\n{location.name} - {format_phone(location.phone)}"
        )
        return f"Reminder: {service} tomorrow", body
    return (
        "",
        f"{location.name}: sorry we missed you for your {service}. Want another time? {link}",
    )


def scheduled_send_due(*, now: datetime, limit: int = 200) -> int:
    """Send the reminders and rebooking messages that are due (claimed with SKIP LOCKED). Returns how many."""
    from django.db import transaction

    with transaction.atomic():
        due = list(
            ScheduledMessage.objects.filter(
                status=ScheduledStatus.SCHEDULED, due_at__lte=now
            )
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        ScheduledMessage.objects.filter(pk__in=due).update(
            status=ScheduledStatus.SENDING
        )
    if not due:
        return 0
    rows = list(
        ScheduledMessage.objects.filter(pk__in=due).select_related(
            "appointment__location", "appointment__service", "lead__location"
        )
    )
    context = messaging.batch_context()
    links = chat_services.chat_links_create(
        leads=list({row.lead_id: row.lead for row in rows}.values())
    )
    kinds = {
        ScheduledKind.REMINDER: MessageKind.REMINDER,
        ScheduledKind.REBOOKING: MessageKind.REBOOKING,
    }
    requests = []
    for row in rows:
        subject, body = scheduled_text(
            row, messaging.public_url(host=context.tenant_host, path=links[row.lead_id])
        )
        requests.append(
            messaging.SendRequest(
                channel=row.channel,
                kind=kinds[row.kind],
                lead=row.lead,
                subject=subject,
                body=body,
            )
        )
    messages = messaging.messages_send(requests, now=now, context=context)
    for row, message in zip(rows, messages, strict=True):
        ScheduledMessage.objects.filter(pk=row.pk).update(
            status=ScheduledStatus.DONE,
            outbound_message=message,
            reason=message.get_block_reason_display() if message.block_reason else "",
        )
    return len(rows)
