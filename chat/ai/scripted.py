"""The offline assistant: rules instead of a model, through the same tools.

Used when no AI provider is configured, past a budget, and as the last fallback
when the remote providers fail. It reads the catalog and the shop's date from
the system prompt, decides from the customer's words which tool to call
(quote, list_services, check_availability, book_appointment, cancel,
request_human), and words its answer from the tool's result, so every price it
states and every booking it makes comes from the server. What it cannot do, it
says, and it offers a person.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from chat.ai.base import (
    TextSink,
    ToolCall,
    ToolRound,
    TranscriptItem,
    TurnRequest,
    TurnResult,
    UserText,
)
from chat.ai.tools import service_match

# The answer reaches the page a few words at a time, as a model's would.
WORDS_PER_PIECE = 4
WEEKDAYS = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)

HUMAN = re.compile(
    r"\b(human|person|people|someone|somebody|agent|staff|representative|manager|"
    r"owner|call me|talk to|speak to|speak with|real person)\b"
)
CANCEL = re.compile(r"\bcancel")
RESCHEDULE = re.compile(r"\b(reschedule|move|change|different time|another time)\b")
BOOK = re.compile(
    r"\b(book|schedule|appointment|available|availability|open|opening|when|times?|"
    r"slots?|come in|bring it|drop off|today|tomorrow|this week|next week|"
    + "|".join(WEEKDAYS)
    + r")\b"
)
PRICE = re.compile(r"\b(price|prices|pricing|cost|costs|how much|quote|charge)\b|\$")
SERVICES = re.compile(r"\b(services|what do you (offer|do|have)|menu|options|list)\b")
YES = re.compile(
    r"^\s*(yes|yeah|yep|yup|sure|ok|okay|please|confirm|confirmed|do it|book it|"
    r"sounds good|that works|perfect|great)\b"
)
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6}
CATALOG_LINE = re.compile(
    r"^- (?P<name>.+?) \[(?P<code>[^\]]+)\] \((?P<category>.*?)\): (?P<price>\$[\d,.]+),"
    r" about (?P<minutes>\d+) minutes",
    re.MULTILINE,
)
TODAY_LINE = re.compile(r"^Now at the shop: \w+ (\w+) (\d+), (\d{4})", re.MULTILINE)


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    code: str
    category: str
    price: str
    minutes: int


class ScriptedProvider:
    name = "scripted"
    model = "scripted-v1"

    def is_configured(self) -> bool:
        return True

    def cost(self, *, input_tokens: int, output_tokens: int) -> Decimal:
        return Decimal(0)

    async def turn(self, request: TurnRequest, on_text: TextSink) -> TurnResult:
        last = request.transcript[-1] if request.transcript else UserText("")
        if isinstance(last, ToolRound):
            # Worded from the tool's result alone: the catalog is not needed.
            text = _after_tools(last)
            calls: list[ToolCall] = []
        else:
            text_in = last.text if isinstance(last, UserText) else ""
            catalog = _catalog(request.system)
            calls = _plan(text_in, request.transcript, catalog, _today(request.system))
            text = "" if calls else _fallback(text_in)
        if text:
            await _stream(text, on_text)
        return TurnResult(
            text=text,
            tool_calls=calls,
            model=self.model,
            stop_reason="tool_use" if calls else "end_turn",
        )


async def _stream(text: str, on_text: TextSink) -> None:
    """Word by word, as a model would: the page shows the answer growing."""
    words = re.findall(r"\S+\s*|\s+", text)
    for index in range(0, len(words), WORDS_PER_PIECE):
        await on_text("".join(words[index : index + WORDS_PER_PIECE]))
        await asyncio.sleep(0)


# Tool call ids, unique across processes and restarts without a uuid each (reading
# the system's randomness showed in the profile of a busy chat server).
_call_prefix = f"scripted_{uuid.uuid4().hex[:8]}_"
_call_numbers = itertools.count(1)


def _call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(
        id=f"{_call_prefix}{next(_call_numbers)}", name=name, arguments=arguments
    )


def _catalog(system: str) -> list[CatalogEntry]:
    return [
        CatalogEntry(
            name=m["name"],
            code=m["code"],
            category=m["category"],
            price=m["price"],
            minutes=int(m["minutes"]),
        )
        for m in CATALOG_LINE.finditer(system)
    ]


def _today(system: str) -> date | None:
    match = TODAY_LINE.search(system)
    if not match:
        return None
    try:
        return datetime.strptime(" ".join(match.groups()), "%B %d %Y").date()  # noqa: DTZ007 - a calendar date
    except ValueError:
        return None


def _plan(
    text: str,
    transcript: tuple[TranscriptItem, ...],
    catalog: list[CatalogEntry],
    today: date | None,
) -> list[ToolCall]:
    """The tool calls the customer's words ask for (none: answer in words)."""
    lowered = text.lower().strip()
    if not lowered:
        return []
    if HUMAN.search(lowered):
        return [_call("request_human", reason=f"The customer asked: {text[:120]}")]
    pending = _last_result(transcript)
    if pending is not None:
        name, result = pending
        if name == "cancel" and "to_confirm" in result and YES.search(lowered):
            return [_call("cancel", confirmed=True)]
        slots = result.get("slots") or []
        if name in ("check_availability", "book_appointment", "reschedule") and slots:
            chosen = _pick_slot(lowered, slots)
            if chosen:
                tool = "reschedule" if _rescheduling(transcript) else "book_appointment"
                return [_call(tool, slot_id=chosen)]
    if CANCEL.search(lowered):
        return [_call("cancel", confirmed=False)]
    service = service_match(lowered, catalog) or _last_service(transcript, catalog)
    wants_time = BOOK.search(lowered) or RESCHEDULE.search(lowered)
    if wants_time and service is not None and not PRICE.search(lowered):
        arguments: dict[str, Any] = {"service": service.code}
        when = _date_in(lowered, today)
        if when is not None:
            arguments["date"] = when.isoformat()
        return [_call("check_availability", **arguments)]
    if PRICE.search(lowered) or service_match(lowered, catalog) is not None:
        matched = service_match(lowered, catalog)
        if matched is not None:
            return [_call("quote", service=matched.code)]
        return [_call("list_services")]
    if SERVICES.search(lowered):
        return [_call("list_services")]
    if wants_time:
        return [_call("list_services")]
    return []


def _results(
    transcript: tuple[TranscriptItem, ...],
) -> list[tuple[str, dict[str, Any]]]:
    """Every tool call of the conversation with its parsed result, oldest first."""
    found = []
    for item in transcript:
        if not isinstance(item, ToolRound):
            continue
        names = {call.id: call.name for call in item.calls}
        for result in item.results:
            try:
                parsed = json.loads(result.content)
            except ValueError:
                parsed = {}
            if isinstance(parsed, dict):
                found.append((names.get(result.call_id, ""), parsed))
    return found


def _last_result(
    transcript: tuple[TranscriptItem, ...],
) -> tuple[str, dict[str, Any]] | None:
    """The latest tool result, if nothing but the customer's words came after it."""
    for item in reversed(transcript[:-1]):
        if isinstance(item, ToolRound):
            results = _results((item,))
            return results[-1] if results else None
        if isinstance(item, UserText):
            return None
    return None


def _rescheduling(transcript: tuple[TranscriptItem, ...]) -> bool:
    """Whether the slots on offer were asked for to move an existing appointment."""
    for item in reversed(transcript[:-1]):
        if isinstance(item, UserText):
            return bool(RESCHEDULE.search(item.text.lower()))
    return False


def _last_service(
    transcript: tuple[TranscriptItem, ...], catalog: list[CatalogEntry]
) -> CatalogEntry | None:
    for name, result in reversed(_results(transcript)):
        service = result.get("service")
        label = service.get("code") if isinstance(service, dict) else service
        if name in ("quote", "check_availability") and isinstance(label, str):
            match = service_match(label, catalog)
            if match is not None:
                return match
    return None


def _pick_slot(text: str, slots: list[dict[str, Any]]) -> str | None:
    """Which offered slot the customer chose, if their words say so unambiguously."""
    ids = [str(slot.get("slot_id", "")) for slot in slots]
    labels = [str(slot.get("label", "")).lower() for slot in slots]
    explicit = re.search(r"\bs(\d)\b", text)
    if explicit and f"S{explicit[1]}" in ids:
        return f"S{explicit[1]}"
    number = re.fullmatch(r"\W*(?:#|number |option )?(\d)\W*", text)
    if number and 1 <= int(number[1]) <= len(ids):
        return ids[int(number[1]) - 1]
    for word, position in ORDINALS.items():
        if re.search(rf"\b{word}\b", text) and position <= len(ids):
            return ids[position - 1]
    wanted_time = _time_in(text)
    if wanted_time:
        matches = [i for i, label in enumerate(labels) if wanted_time in label]
        day_matches = [
            i for i in matches if any(day[:3] in text for day in _days_in(labels[i]))
        ]
        chosen = day_matches or matches
        if len(chosen) == 1 or (chosen and day_matches):
            return ids[chosen[0]]
    if YES.search(text) and len(ids) == 1:
        return ids[0]
    return None


def _days_in(label: str) -> list[str]:
    return [day for day in WEEKDAYS if day[:3] in label]


def _time_in(text: str) -> str | None:
    """A clock time in the customer's words, as labels write it ("10:30 am")."""
    match = re.search(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?", text)
    if not match or not (match[2] or match[3]):
        return None
    hour, minutes = int(match[1]), match[2] or "00"
    if not 1 <= hour <= 12:
        return None
    meridiem = (match[3] or "").replace(".", "")
    if not meridiem:
        meridiem = "am" if 7 <= hour <= 11 else "pm"
    return f"{hour}:{minutes} {meridiem}"


def _date_in(text: str, today: date | None) -> date | None:
    if today is None:
        return None
    if "tomorrow" in text:
        return today + timedelta(days=1)
    if "today" in text:
        return today
    for index, day in enumerate(WEEKDAYS):
        if re.search(rf"\b{day}\b", text):
            return today + timedelta(days=(index - today.weekday()) % 7 or 7)
    return None


def _fallback(text: str) -> str:
    if re.search(
        r"^\s*(hi|hello|hey|good (morning|afternoon|evening))\b", text.lower()
    ):
        return (
            "Hi! I can tell you our prices, find an open time and book it for you. "
            "What would you like to know?"
        )
    return (
        "I'm the shop's booking assistant, so I can only help with prices, open "
        'times and appointments. For anything else, just say "talk to a person" '
        "and someone from the shop will reply here."
    )


def _after_tools(round_: ToolRound) -> str:
    """The answer to the customer, worded from what the tools returned."""
    parts = [
        word_result(name, result, is_error)
        for name, result, is_error in _round_results(round_)
    ]
    return "\n\n".join(part for part in parts if part)


def _round_results(round_: ToolRound) -> list[tuple[str, dict[str, Any], bool]]:
    names = {call.id: call.name for call in round_.calls}
    out = []
    for result in round_.results:
        try:
            parsed = json.loads(result.content)
        except ValueError:
            parsed = {}
        out.append((names.get(result.call_id, ""), parsed, result.is_error))
    return out


def _slot_lines(slots: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{index}. {slot.get('label', '')}" for index, slot in enumerate(slots, start=1)
    )


def word_result(name: str, result: dict[str, Any], is_error: bool) -> str:
    if name in ("book_appointment", "reschedule") and result.get("slots"):
        return (
            "Sorry, that time was just taken. These are free nearby:\n"
            f"{_slot_lines(result['slots'])}\nWhich one works for you?"
        )
    if is_error:
        error = str(result.get("error", ""))
        if error.startswith("No service here matches"):
            offered = error.split("Services offered:", 1)[-1].strip().rstrip(".")
            names = re.sub(r" \[[^\]]+\]", "", offered)
            return f"I'm not sure which service you mean. We offer: {names}. Which one?"
        if "no booked appointment" in error:
            return "I don't see an appointment for you yet. Want me to find you a time?"
        if "already has an appointment" in error:
            return (
                "You already have an appointment with us. I can move it or cancel it; "
                "just say which."
            )
        return (
            "Sorry, I couldn't do that. Would you like someone from the shop to help? "
            'Just say "talk to a person".'
        )
    if name == "quote":
        service = result["service"]
        return (
            f"{service['name']} is {service['price']} at this location and takes about "
            f"{service['duration_minutes']} minutes. Want me to find you a time?"
        )
    if name == "list_services":
        lines = "\n".join(
            f"- {s['name']}: {s['price']} (about {s['duration_minutes']} min)"
            for s in result.get("services", [])
        )
        return f"Here's what we offer:\n{lines}\nWhich one are you interested in?"
    if name == "check_availability":
        slots = result.get("slots") or []
        if not slots:
            return (
                f"I couldn't find a free time for {result.get('service', 'that')} soon. "
                "Want someone from the shop to reach out?"
            )
        return (
            f"Here are the next open times for {result['service']} "
            f"({result.get('price', '')}):\n{_slot_lines(slots)}\n"
            "Tap one, or reply with its number."
        )
    if name in ("book_appointment", "reschedule"):
        card = result.get("booked") or result.get("rescheduled") or {}
        verb = "You're booked" if name == "book_appointment" else "Moved"
        return (
            f"{verb}: {card.get('service')} on {card.get('label')} at "
            f"{card.get('location')}. A confirmation is on its way."
        )
    if name == "cancel":
        if "to_confirm" in result:
            card = result["to_confirm"]
            return (
                f"Just to confirm: cancel your {card.get('service')} on "
                f"{card.get('label')}? Reply yes to cancel."
            )
        card = result.get("cancelled", {})
        return f"Done, your {card.get('service')} on {card.get('label')} is cancelled."
    if name == "request_human":
        return "I've asked the team at the shop to join; someone will reply here soon."
    return ""
