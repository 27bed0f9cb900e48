"""The tools the assistant may call, run on the server for one session's lead.

Whatever a model sends, a tool acts only for the lead and location its
``ToolBinding`` names: no tool takes a lead, location or tenant argument, and
arguments a tool does not define are refused. Bookings are limited to slots the
assistant offered in this conversation, and only once the customer has written
again after the offer (their confirmation) or pressed the slot's button.

Every tool returns a ``ToolOutcome``: JSON for the model, and what the chat page
shows beside the answer (offered slots, a booking card). A refused call is an
outcome with ``is_error`` and a sentence telling the model why.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appointments import services as appointment_services
from appointments.models import Appointment, AppointmentSource, AppointmentStatus
from appointments.services import SlotTakenError
from chat import services as chat_services
from chat.ai.base import ToolCall, ToolSpec
from chat.ai.context import ServiceInfo, location_facts, money, slot_label
from chat.models import ChatSession
from leadorch.errors import ApplicationError
from locations.models import ServiceCatalogItem

logger = logging.getLogger(__name__)

T = TypeVar("T")
LocalDate = date

# Slots offered at once: enough choice, short enough for a phone screen or an SMS.
MAX_OFFERED_SLOTS = 6
MAX_SEARCH_DAYS = 14


@dataclass(frozen=True)
class ToolBinding:
    """Whom the tools act for: fixed by the server, never by the model."""

    session_id: int
    lead_id: int
    location_id: int
    # The customer message being answered; a booking needs one later than the offer.
    customer_message_id: int | None
    channel: str = "web"
    # True when the customer pressed an offered slot's button (their explicit confirmation).
    confirmed_by_customer: bool = False


@dataclass
class ToolOutcome:
    content: dict[str, Any]
    is_error: bool = False
    # For the page: {"slots": [...]} or {"appointment": {...}}.
    display: dict[str, Any] = field(default_factory=dict)
    handed_over: bool = False

    def as_text(self) -> str:
        return json.dumps(self.content, default=str)


def refused(message: str) -> ToolOutcome:
    return ToolOutcome(content={"error": message}, is_error=True)


# --- arguments -----------------------------------------------------------------------


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NoArgs(_Args):
    pass


class ListServicesArgs(_Args):
    category: str | None = Field(default=None, max_length=100)


class QuoteArgs(_Args):
    service: str = Field(min_length=1, max_length=200)


class AvailabilityArgs(_Args):
    service: str = Field(min_length=1, max_length=200)
    date: LocalDate | None = None
    days: int = Field(default=7, ge=1, le=MAX_SEARCH_DAYS)


class SlotArgs(_Args):
    slot_id: str = Field(min_length=1, max_length=20)


class CancelArgs(_Args):
    confirmed: bool = False


class HumanArgs(_Args):
    reason: str = Field(default="", max_length=200)


def _schema(model: type[_Args]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema["additionalProperties"] = False
    schema.setdefault("properties", {})
    return schema


TOOLS: dict[str, tuple[type[_Args], str]] = {
    "list_services": (
        ListServicesArgs,
        "List the services this location offers with prices and durations, "
        "optionally of one category.",
    ),
    "quote": (
        QuoteArgs,
        "The price and duration of one service, by its code or name.",
    ),
    "check_availability": (
        AvailabilityArgs,
        "Free appointment slots for a service from a date (YYYY-MM-DD, the shop's "
        "local date; default today) over some days. Returns slot ids and labels to "
        "offer the customer.",
    ),
    "book_appointment": (
        SlotArgs,
        "Book a slot that check_availability offered, after the customer confirmed "
        "it in a later message.",
    ),
    "reschedule": (
        SlotArgs,
        "Move the customer's appointment to an offered slot the customer confirmed.",
    ),
    "cancel": (
        CancelArgs,
        "Cancel the customer's appointment. First call with confirmed=false to get "
        "what to confirm; call with confirmed=true only after the customer said yes.",
    ),
    "request_human": (
        HumanArgs,
        "Hand the conversation to the shop's staff, with a short reason.",
    ),
}

TOOL_SPECS: tuple[ToolSpec, ...] = tuple(
    ToolSpec(name=name, description=description, parameters=_schema(model))
    for name, (model, description) in TOOLS.items()
)


def tool_run(
    *, binding: ToolBinding, call: ToolCall, session: ChatSession | None = None
) -> ToolOutcome:
    """Validate and run one call for the bound lead. Precondition: inside its tenant.

    ``session``: the binding's session with its lead and location, when the answer
    loaded it already (it must be the binding's own)."""
    spec = TOOLS.get(call.name)
    if spec is None:
        return refused(f"There is no tool named {call.name[:50]!r}.")
    if call.arguments_error:
        return refused(f"The arguments were not valid JSON: {call.arguments_error}")
    model, _ = spec
    try:
        arguments = model.model_validate(call.arguments)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
            for e in error.errors()[:5]
        )
        return refused(
            f"Invalid arguments ({problems}). Tools act only for this customer and "
            "take no customer, lead or location arguments."
        )
    if session is None or session.pk != binding.session_id:
        session = ChatSession.objects.select_related("lead__location").get(
            pk=binding.session_id
        )
    if session.lead_id != binding.lead_id:  # the binding is the server's; never true
        raise ApplicationError("Tool binding does not match its session.")
    handler = _HANDLERS[call.name]
    try:
        return handler(session, binding, arguments)
    except ApplicationError as error:
        return refused(error.message)


# --- the tools ------------------------------------------------------------------------


def _session_set(session: ChatSession, **fields: Any) -> None:
    """Change the session's row and the loaded object alike: later calls of the
    same answer read the object."""
    ChatSession.objects.filter(pk=session.pk).update(**fields)
    for name, value in fields.items():
        setattr(session, name, value)


def _catalog(session: ChatSession) -> tuple[ServiceInfo, ...]:
    """The location's services and prices, as the assistant's instructions show them."""
    return location_facts(session.lead.location).services


def _service_row(item: ServiceInfo) -> dict[str, Any]:
    return {
        "code": item.code,
        "name": item.name,
        "category": item.category,
        "price": item.price,
        "duration_minutes": item.duration_minutes,
    }


_WORD = re.compile(r"[a-z0-9]+")
# Words that say nothing about which service is meant.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "the",
        "for",
        "of",
        "on",
        "my",
        "to",
        "me",
        "i",
        "is",
        "it",
        "how",
        "much",
        "what",
        "price",
        "cost",
        "costs",
        "does",
        "do",
        "you",
        "your",
        "can",
        "get",
        "quote",
        "book",
        "appointment",
        "please",
        "want",
        "would",
        "like",
        "need",
        "with",
        "in",
        "at",
        "this",
        "that",
        "car",
        "window",
        "windows",
        "tint",
        "tinting",
        "service",
    ]
)


def service_match(text: str, catalog: Sequence[T]) -> T | None:
    """The catalog item ``text`` names: by code, by name, else by the most shared words.

    Items are anything with ``name``, ``code`` and ``category``.

    Generic words ("tint", "window", "car") only break ties, so "ceramic tint"
    finds the ceramic film rather than the first item with "tint" in its name.
    """
    wanted = text.strip().lower()
    if not wanted:
        return None
    for item in catalog:
        if wanted in (item.code.lower(), item.name.lower()):
            return item
    words = set(_WORD.findall(wanted))
    specific = words - _STOPWORDS
    best, best_score = None, (0, 0)
    for item in catalog:
        item_words = set(
            _WORD.findall(f"{item.name} {item.code} {item.category}".lower())
        )
        score = (len(specific & item_words), len(words & item_words))
        if score > best_score:
            best, best_score = item, score
    if best is None or best_score[0] == 0:
        return None
    return best


def _find_service(session: ChatSession, text: str) -> ServiceInfo:
    catalog = _catalog(session)
    item = service_match(text, catalog)
    if item is None:
        names = ", ".join(f"{i.name} [{i.code}]" for i in catalog[:30])
        raise ApplicationError(
            f"No service here matches {text[:80]!r}. Services offered: {names}."
        )
    return item


def _list_services(
    session: ChatSession, binding: ToolBinding, args: ListServicesArgs
) -> ToolOutcome:
    items = _catalog(session)
    if args.category:
        wanted = args.category.lower()
        items = [i for i in items if wanted in i.category.lower()] or items
    return ToolOutcome(content={"services": [_service_row(i) for i in items]})


def _quote(session: ChatSession, binding: ToolBinding, args: QuoteArgs) -> ToolOutcome:
    item = _find_service(session, args.service)
    return ToolOutcome(content={"service": _service_row(item)})


def _check_availability(
    session: ChatSession, binding: ToolBinding, args: AvailabilityArgs
) -> ToolOutcome:
    item = _find_service(session, args.service)
    location = session.lead.location
    today = timezone.now().astimezone(location.zone).date()
    start = max(args.date or today, today)
    slots = appointment_services.availability_for(
        location=location,
        date_from=start,
        date_to=start + timedelta(days=args.days - 1),
        duration=timedelta(minutes=item.duration_minutes),
    )
    chosen = _spread(slots, MAX_OFFERED_SLOTS)
    offered = [
        {
            "id": f"S{index}",
            "service_id": item.id,
            "service": item.name,
            "start": slot.start.isoformat(),
            "label": slot_label(slot.start, location.time_zone),
        }
        for index, slot in enumerate(chosen, start=1)
    ]
    _session_set(
        session,
        offered_slots=offered,
        offered_for_message_id=binding.customer_message_id,
    )
    if not offered:
        return ToolOutcome(
            content={
                "service": item.name,
                "slots": [],
                "note": f"No free time from {start:%b %d} over {args.days} days.",
            }
        )
    return ToolOutcome(
        content={
            "service": item.name,
            "duration_minutes": item.duration_minutes,
            "price": item.price,
            "slots": [{"slot_id": o["id"], "label": o["label"]} for o in offered],
        },
        display={"slots": [_public_slot(o) for o in offered]},
    )


def _public_slot(offered: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": offered["id"],
        "label": offered["label"],
        "service": offered["service"],
        "start": offered["start"],
    }


def _spread(slots: list[Any], count: int) -> list[Any]:
    """Up to ``count`` slots over as many days as possible: each day's first, then second."""
    by_day: dict[date, list[Any]] = {}
    for slot in slots:
        by_day.setdefault(slot.start.date(), []).append(slot)
    chosen = [
        day_slots[rank]
        for rank in range(2)
        for day_slots in by_day.values()
        if rank < len(day_slots)
    ]
    return sorted(chosen[:count], key=lambda slot: slot.start)


def _confirmed_slot(
    session: ChatSession, binding: ToolBinding, slot_id: str
) -> dict[str, Any]:
    """The offered slot ``slot_id``, if the customer has confirmed it."""
    offered = {o["id"]: o for o in session.offered_slots or []}
    slot = offered.get(slot_id.strip().upper())
    if slot is None:
        known = ", ".join(offered) or "none"
        raise ApplicationError(
            f"Slot {slot_id[:20]!r} was not offered in this conversation (offered: "
            f"{known}). Call check_availability and offer slots first."
        )
    confirmed = binding.confirmed_by_customer or (
        binding.customer_message_id is not None
        and session.offered_for_message_id is not None
        and binding.customer_message_id > session.offered_for_message_id
    )
    if not confirmed:
        raise ApplicationError(
            "The customer has not confirmed this slot yet. Offer it and wait for "
            "their answer before booking."
        )
    return slot


def _appointment_card(appointment: Appointment) -> dict[str, Any]:
    location = appointment.location
    return {
        "id": appointment.pk,
        "service": appointment.service.name,
        "starts_at": appointment.starts_at.isoformat(),
        "label": slot_label(appointment.starts_at, location.time_zone),
        "location": location.name,
        "address": location.address,
        "price": money(appointment.price_cents),
        "status": appointment.status,
    }


def _source(binding: ToolBinding) -> str:
    return AppointmentSource.SMS if binding.channel == "sms" else AppointmentSource.CHAT


def _book_appointment(
    session: ChatSession, binding: ToolBinding, args: SlotArgs
) -> ToolOutcome:
    slot = _confirmed_slot(session, binding, args.slot_id)
    service = ServiceCatalogItem.objects.get(pk=slot["service_id"])
    try:
        appointment = appointment_services.appointment_book(
            lead=session.lead,
            service=service,
            starts_at=datetime.fromisoformat(slot["start"]),
            source=_source(binding),
        )
    except SlotTakenError as error:
        return _slot_taken(session, binding, error, service)
    _session_set(session, offered_slots=[], offered_for_message_id=None)
    card = _appointment_card(appointment)
    return ToolOutcome(content={"booked": card}, display={"appointment": card})


def _slot_taken(
    session: ChatSession,
    binding: ToolBinding,
    error: SlotTakenError,
    service: ServiceCatalogItem,
) -> ToolOutcome:
    """The slot went meanwhile: offer the nearest free ones instead (to be confirmed)."""
    location = session.lead.location
    offered = [
        {
            "id": f"S{index}",
            "service_id": service.pk,
            "service": service.name,
            "start": slot.start.isoformat(),
            "label": slot_label(slot.start, location.time_zone),
        }
        for index, slot in enumerate(error.alternatives, start=1)
    ]
    _session_set(
        session,
        offered_slots=offered,
        offered_for_message_id=binding.customer_message_id,
    )
    return ToolOutcome(
        content={
            "error": "That slot was just taken. Offer these instead and ask again.",
            "slots": [{"slot_id": o["id"], "label": o["label"]} for o in offered],
        },
        is_error=True,
        display={"slots": [_public_slot(o) for o in offered]},
    )


def _active_appointment(session: ChatSession) -> Appointment:
    appointment = (
        Appointment.objects.select_related("service", "location")
        .filter(lead=session.lead, status=AppointmentStatus.BOOKED)
        .first()
    )
    if appointment is None:
        raise ApplicationError("The customer has no booked appointment.")
    return appointment


def _reschedule(
    session: ChatSession, binding: ToolBinding, args: SlotArgs
) -> ToolOutcome:
    appointment = _active_appointment(session)
    slot = _confirmed_slot(session, binding, args.slot_id)
    if slot["service_id"] != appointment.service_id:
        raise ApplicationError(
            f"Slot {slot['id']} is for {slot['service']}, but the appointment is for "
            f"{appointment.service.name}. Check availability for that service."
        )
    try:
        with transaction.atomic():
            moved = appointment_services.appointment_reschedule(
                appointment=appointment, starts_at=datetime.fromisoformat(slot["start"])
            )
    except SlotTakenError as error:
        return _slot_taken(session, binding, error, appointment.service)
    _session_set(session, offered_slots=[], offered_for_message_id=None)
    card = _appointment_card(moved)
    return ToolOutcome(content={"rescheduled": card}, display={"appointment": card})


def _cancel(
    session: ChatSession, binding: ToolBinding, args: CancelArgs
) -> ToolOutcome:
    appointment = _active_appointment(session)
    card = _appointment_card(appointment)
    asked_at = session.cancel_offered_for_message_id
    confirmed = (
        args.confirmed
        and asked_at is not None
        and binding.customer_message_id is not None
        and binding.customer_message_id > asked_at
    )
    if not confirmed:
        _session_set(session, cancel_offered_for_message_id=binding.customer_message_id)
        return ToolOutcome(
            content={
                "to_confirm": card,
                "note": "Ask the customer to confirm. Call cancel with confirmed=true "
                "only after their answer.",
            }
        )
    with transaction.atomic():
        cancelled = appointment_services.appointment_cancel(
            appointment=appointment, reason="Cancelled by the customer in chat"
        )
    _session_set(session, cancel_offered_for_message_id=None)
    card = _appointment_card(cancelled)
    return ToolOutcome(content={"cancelled": card}, display={"appointment": card})


def _request_human(
    session: ChatSession, binding: ToolBinding, args: HumanArgs
) -> ToolOutcome:
    chat_services.handoff_request(
        session=session, reason=args.reason or "The assistant asked for help"
    )
    return ToolOutcome(
        content={
            "handed_over": True,
            "note": "Tell the customer someone from the shop will reply here soon.",
        },
        handed_over=True,
    )


_HANDLERS = {
    "list_services": _list_services,
    "quote": _quote,
    "check_availability": _check_availability,
    "book_appointment": _book_appointment,
    "reschedule": _reschedule,
    "cancel": _cancel,
    "request_human": _request_human,
}
