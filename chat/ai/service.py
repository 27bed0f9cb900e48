"""Answering a customer: budgets, the provider chain, the tool loop, the record.

``assistant_answer`` is the one entry point for the chat page's socket, the
REST API and SMS conversations. It loads what the assistant may know, picks
the providers (AI_PROVIDER first, the other configured ones next, the offline
assistant last; only the offline one past a budget), asks them in turn until
one answers, runs the tools each turn asks for, and stores the answer with its
provider, model, tokens, cost, latency, tool calls and the providers that
failed before it. A provider that errors or takes longer than
AI_TIMEOUT_SECONDS for a call is skipped for the next; the tool calls already
made stay in the transcript the next one sees, so nothing is done twice.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from appointments.models import Appointment, AppointmentStatus
from chat import services as chat_services
from chat.ai import health
from chat.ai.base import (
    AssistantText,
    Provider,
    ToolCall,
    ToolResult,
    ToolRound,
    TranscriptItem,
    TurnRequest,
    UserText,
)
from chat.ai.context import (
    booked_read,
    booked_statement,
    brand_facts,
    brand_facts_key,
    cache_keep,
    cached_value,
    context_from,
    location_facts_key,
    system_prompt,
)
from chat.ai.providers import providers_chain
from chat.ai.scripted import word_result
from chat.ai.tools import TOOL_SPECS, ToolBinding, ToolOutcome, tool_run
from chat.db import in_schema
from chat.models import (
    ChatMessage,
    ChatSession,
    MessageChannel,
    MessageRole,
    SessionMode,
)
from leadorch import sql
from leadorch.errors import ApplicationError

logger = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], Awaitable[None]]


class AssistantUnavailableError(Exception):
    """No provider, not even the offline one, could answer."""


# --- what one answer starts from ---------------------------------------------------------


@dataclass
class Prepared:
    # Loaded at the start of the answer; the tools reuse it within the answer.
    session: ChatSession
    session_public_id: Any
    system: str
    transcript: tuple[TranscriptItem, ...]
    binding: ToolBinding
    allow_remote: bool
    limits: list[str] = field(default_factory=list)


def budget_state(
    *,
    session: ChatSession,
    now: datetime | None = None,
    cached: MutableMapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Where the session and the brand stand against the AI budgets. ``cached``: what
    one read of the cache found for the turn (``turn_cached``)."""
    now = now or timezone.now()
    cap = brand_facts(connection.schema_name, cached=cached).ai_daily_spend_cap
    if cap is None:
        cap = Decimal(settings.AI_DAILY_SPEND_CAP_USD)
    return {
        "tokens": session.assistant_tokens,
        "customer_messages": session.customer_messages,
        "spent_today": spend_today(now=now, cached=cached),
        "daily_cap": cap,
    }


def _day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _spend_key(schema_name: str, now: datetime) -> str:
    return f"leadorch:chat:spend:{schema_name}:{_day_start(now):%Y-%m-%d}"


def spend_today(
    *, now: datetime, cached: MutableMapping[str, Any] | None = None
) -> Decimal:
    """The brand's AI spend since midnight UTC, kept AI_SPEND_CACHE_SECONDS.
    ``cached``: as for ``budget_state``."""
    day_start = _day_start(now)
    key = _spend_key(connection.schema_name, now)
    spent = cached_value(key, cached)
    if spent is None:
        spent = ChatMessage.objects.filter(
            role=MessageRole.ASSISTANT, created_at__gte=day_start
        ).aggregate(total=Sum("cost"))["total"] or Decimal(0)
        cache_keep(key, spent, settings.AI_SPEND_CACHE_SECONDS, cached)
    return spent


def turn_cached(*, session: ChatSession, now: datetime) -> dict[str, Any]:
    """What the cache holds of the facts a turn reads there (the brand's, its spend
    today, the location's), in one read: a cache shared over the network (Redis)
    answers once instead of once for each. Absent keys were not cached."""
    schema_name = connection.schema_name
    return cache.get_many(
        [
            brand_facts_key(schema_name),
            _spend_key(schema_name, now),
            location_facts_key(schema_name, session.lead.location_id),
        ],
        version=0,
    )


@dataclass(frozen=True)
class TurnRead:
    """The session with its lead and location, its newest messages (oldest first),
    how many messages it had, and the rows of its lead's booked appointment."""

    session: ChatSession
    history: list[ChatMessage]
    booked: list[tuple[Any, ...]]
    messages: int


def turn_read(*, session_id: int) -> TurnRead:
    """What a turn reads before the model is asked, in one round trip: the session,
    its transcript and its booked appointment. Raises ChatSession.DoesNotExist."""
    session_rows, history_rows, booked = sql.fetch_batch(
        [
            chat_services.session_with_lead_statement(session_id=session_id),
            chat_services.transcript_statement(
                session_id=session_id, limit=settings.AI_HISTORY_MESSAGES
            ),
            booked_statement(session_id=session_id),
        ]
    )
    return TurnRead(
        session=chat_services.session_from_rows(session_rows, session_id=session_id),
        history=chat_services.transcript_from_rows(history_rows),
        booked=booked,
        messages=chat_services.transcript_count(history_rows),
    )


def _prepare(
    *,
    session_id: int,
    customer_message_id: int | None,
    channel: str,
    confirmed_by_customer: bool,
    read: TurnRead | None = None,
) -> Prepared | None:
    """What answering needs. ``read`` may come from the same thread's work, saving
    its round trip."""
    if read is None:
        read = turn_read(session_id=session_id)
    session = read.session
    if session.mode != SessionMode.ASSISTANT or session.revoked_at is not None:
        return None
    now = timezone.now()
    cached = turn_cached(session=session, now=now)
    budget = budget_state(session=session, now=now, cached=cached)
    if budget["customer_messages"] > settings.AI_SESSION_MAX_MESSAGES:
        chat_services.handoff_request(
            session=session, reason="The conversation passed the assistant's length"
        )
        return None
    limits = []
    if budget["tokens"] >= settings.AI_SESSION_MAX_TOKENS:
        limits.append("session_tokens")
    if budget["spent_today"] >= budget["daily_cap"]:
        limits.append("daily_spend")
    context = context_from(session=session, booked=read.booked, now=now, cached=cached)
    history = read.history
    if customer_message_id is not None:
        history = [m for m in history if m.pk <= customer_message_id]
    return Prepared(
        session=session,
        session_public_id=session.public_id,
        system=system_prompt(context, channel=channel),
        transcript=transcript_from(history),
        binding=ToolBinding(
            session_id=session.pk,
            lead_id=session.lead_id,
            location_id=session.lead.location_id,
            customer_message_id=customer_message_id,
            channel=channel,
            confirmed_by_customer=confirmed_by_customer,
        ),
        allow_remote=not limits,
        limits=limits,
    )


def transcript_from(messages: list[ChatMessage]) -> tuple[TranscriptItem, ...]:
    """The stored conversation as the neutral transcript, tool rounds included."""
    items: list[TranscriptItem] = []
    for message in messages:
        if message.role == MessageRole.CUSTOMER:
            items.append(UserText(message.body))
        elif message.role == MessageRole.ASSISTANT:
            items.extend(_rounds_from(message.tool_calls))
            if message.body:
                items.append(AssistantText(message.body))
        elif message.role == MessageRole.STAFF:
            items.append(
                AssistantText(f"(A staff member of the shop wrote:) {message.body}")
            )
    return tuple(items)


def _rounds_from(stored: list[dict[str, Any]]) -> list[ToolRound]:
    rounds = []
    for entry in stored or []:
        try:
            rounds.append(
                ToolRound(
                    text=entry.get("text", ""),
                    calls=tuple(
                        ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"])
                        for c in entry["calls"]
                    ),
                    results=tuple(
                        ToolResult(
                            call_id=r["call_id"],
                            content=r["content"],
                            is_error=r.get("is_error", False),
                        )
                        for r in entry["results"]
                    ),
                )
            )
        except (KeyError, TypeError):
            logger.warning("Skipping a stored tool round that does not parse")
    return rounds


def _round_record(round_: ToolRound) -> dict[str, Any]:
    return {
        "text": round_.text,
        "calls": [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in round_.calls
        ],
        "results": [
            {"call_id": r.call_id, "content": r.content, "is_error": r.is_error}
            for r in round_.results
        ],
    }


# --- the answer ------------------------------------------------------------------------------


@dataclass
class _Attempt:
    text: str
    input_tokens: int
    output_tokens: int
    model: str


async def _noop(event: dict[str, Any]) -> None:
    return None


async def assistant_answer(
    *,
    schema_name: str,
    session_id: int,
    customer_message_id: int | None,
    channel: str = "web",
    on_event: EventSink | None = None,
    confirmed_by_customer: bool = False,
    parallel: bool = False,
    prepared: Prepared | None = None,
) -> ChatMessage | None:
    """Answer the customer's latest message; None when the assistant does not answer
    (the session is with staff, closed, or past its length).

    ``on_event`` gets ``{"type": "delta", "text", "reply_to"}`` as the text is
    written, ``{"type": "reset"}`` when a provider failed after writing some (the
    next one starts over), and ``{"type": "answered"}`` once the text is complete,
    just before the answer is stored.
    ``parallel``: run the database work on the pool of threads (see chat.db); the
    socket does, callers on a sync thread with a transaction of their own do not.
    ``prepared``: what ``customer_turn_start`` already read for this answer.
    """
    emit = on_event or _noop
    if prepared is None:
        prepared = await in_schema(
            schema_name,
            _prepare,
            parallel=parallel,
            short=True,
            session_id=session_id,
            customer_message_id=customer_message_id,
            channel=channel,
            confirmed_by_customer=confirmed_by_customer,
        )
    if prepared is None:
        return None
    started = time.monotonic()
    rounds: list[ToolRound] = []
    outcomes: list[ToolOutcome] = []
    fallbacks: list[dict[str, Any]] = []
    answered: tuple[Provider, _Attempt] | None = None
    for provider in providers_chain(allow_remote=prepared.allow_remote):
        attempt_started = time.monotonic()
        streamed = False

        async def on_text(text: str) -> None:
            nonlocal streamed
            streamed = True
            await emit({"type": "delta", "text": text, "reply_to": customer_message_id})

        try:
            attempt = await _answer_with(
                provider, prepared, rounds, outcomes, on_text, schema_name, parallel
            )
        except Exception as error:
            reason = _describe(error)
            logger.warning("Assistant provider %s failed: %s", provider.name, reason)
            health.record(provider.name, ok=False, error=reason)
            fallbacks.append(
                {
                    "provider": provider.name,
                    "error": reason,
                    "ms": round((time.monotonic() - attempt_started) * 1000),
                }
            )
            if streamed:
                await emit({"type": "reset", "reply_to": customer_message_id})
            continue
        health.record(provider.name, ok=True)
        answered = (provider, attempt)
        break
    if answered is None:
        raise AssistantUnavailableError("Every assistant provider failed")
    provider, attempt = answered
    # The whole text is out: anything the sink holds back goes before the stored answer.
    await emit({"type": "answered", "reply_to": customer_message_id})
    display: dict[str, Any] = {}
    for outcome in outcomes:
        display.update(outcome.display)
    return await in_schema(
        schema_name,
        _store,
        parallel=parallel,
        short=True,
        session_id=session_id,
        session_public_id=prepared.session_public_id,
        body=attempt.text,
        channel=channel,
        provider=provider.name,
        model=attempt.model or provider.model,
        input_tokens=attempt.input_tokens,
        output_tokens=attempt.output_tokens,
        cost=provider.cost(
            input_tokens=attempt.input_tokens, output_tokens=attempt.output_tokens
        ),
        latency_ms=round((time.monotonic() - started) * 1000),
        tool_calls=[_round_record(r) for r in rounds],
        fallbacks=fallbacks,
        data=display,
    )


def _store(
    *, session_id: int, session_public_id: Any, body: str, channel: str, **fields: Any
) -> ChatMessage:
    # The session's id and public id are all the store needs: no need to load it.
    session = ChatSession(pk=session_id, public_id=session_public_id)
    return chat_services.assistant_message_store(
        session=session, body=body, channel=channel, **fields
    )


async def _answer_with(
    provider: Provider,
    prepared: Prepared,
    rounds: list[ToolRound],
    outcomes: list[ToolOutcome],
    on_text: Callable[[str], Awaitable[None]],
    schema_name: str,
    parallel: bool,
) -> _Attempt:
    """One provider's answer: turns and tool calls until a turn has no calls.

    Each model call may take AI_TIMEOUT_SECONDS. Rounds are appended to
    ``rounds`` as they complete, so a provider that fails midway leaves the
    tools it ran on record for the next one.
    """
    input_tokens = output_tokens = 0
    texts: list[str] = []
    model = ""
    for number in range(settings.AI_MAX_TOOL_ROUNDS + 1):
        last_call = number == settings.AI_MAX_TOOL_ROUNDS
        request = TurnRequest(
            system=prepared.system,
            transcript=prepared.transcript + tuple(rounds),
            tools=() if last_call else TOOL_SPECS,
            max_tokens=settings.AI_MAX_TOKENS,
        )
        async with asyncio.timeout(settings.AI_TIMEOUT_SECONDS):
            result = await provider.turn(request, on_text)
        input_tokens += result.input_tokens
        output_tokens += result.output_tokens
        model = result.model or model
        if result.text.strip():
            texts.append(result.text.strip())
        if not result.tool_calls or last_call:
            break
        results = []
        for call in result.tool_calls:
            outcome = await in_schema(
                schema_name,
                tool_run,
                parallel=parallel,
                binding=prepared.binding,
                call=call,
                session=prepared.session,
            )
            outcomes.append(outcome)
            results.append(
                ToolResult(
                    call_id=call.id,
                    content=outcome.as_text(),
                    is_error=outcome.is_error,
                )
            )
        rounds.append(
            ToolRound(
                text=result.text, calls=tuple(result.tool_calls), results=tuple(results)
            )
        )
    text = "\n\n".join(texts)
    if not text:
        raise ValueError(f"{provider.name} answered with no text")
    return _Attempt(
        text=text, input_tokens=input_tokens, output_tokens=output_tokens, model=model
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {settings.AI_TIMEOUT_SECONDS:g} s"
    return f"{type(error).__name__}: {str(error)[:200]}"


def slot_book_by_customer(
    *, session_id: int, slot_id: str, client_id: str = ""
) -> list[ChatMessage]:
    """The customer pressed an offered slot's button: book it (or move their
    appointment there) without a model, and answer with the booking card.

    The press is the customer's confirmation. Returns the customer's message and
    the answer; a resend with the same ``client_id`` books nothing more.
    Precondition: inside the brand's schema.
    """
    session = ChatSession.objects.select_related("lead__location").get(pk=session_id)
    if client_id:
        pressed = ChatMessage.objects.filter(session=session, client_id=client_id)
        if pressed.exists():
            return list(pressed)
    slot = {o["id"]: o for o in session.offered_slots or []}.get(
        slot_id.strip().upper()
    )
    if slot is None:
        raise ApplicationError(
            "That time is no longer on offer. Ask for times again.",
            code="slot_not_offered",
        )
    posted = chat_services.customer_message_post(
        session=session,
        text=f"Book {slot['label']}",
        client_id=client_id,
        channel=MessageChannel.WEB,
    )
    if not posted.created:
        return [posted.message]
    moving = Appointment.objects.filter(
        lead=session.lead, status=AppointmentStatus.BOOKED
    ).exists()
    call = ToolCall(
        id=f"page_{posted.message.pk}",
        name="reschedule" if moving else "book_appointment",
        arguments={"slot_id": slot["id"]},
    )
    outcome = tool_run(
        binding=ToolBinding(
            session_id=session.pk,
            lead_id=session.lead_id,
            location_id=session.lead.location_id,
            customer_message_id=posted.message.pk,
            channel=MessageChannel.WEB,
            confirmed_by_customer=True,
        ),
        call=call,
    )
    round_ = ToolRound(
        text="",
        calls=(call,),
        results=(
            ToolResult(
                call_id=call.id, content=outcome.as_text(), is_error=outcome.is_error
            ),
        ),
    )
    answer = chat_services.assistant_message_store(
        session=session,
        body=word_result(call.name, outcome.content, outcome.is_error),
        channel=MessageChannel.WEB,
        provider="page",
        model="",
        tool_calls=[_round_record(round_)],
        data=outcome.display,
    )
    return [posted.message, answer]


@dataclass(frozen=True)
class Kept:
    """What a chat socket keeps of its conversation from one turn to the next, so
    that a turn need not read it again: the session as the last statement left it
    (for the checks before a message is stored), the newest messages, oldest first,
    and how many messages the session had with them.

    Only a cache: each turn's statement reads the session, its lead, location and
    appointment afresh and counts the session's messages; a count or newest message
    other than these (a staff reply, another tab's message) reads the transcript
    again. Messages are never changed or removed while their session lasts, so the
    count and the newest id tell whether any came that these lack."""

    session: ChatSession
    history: list[ChatMessage]
    messages: int

    def with_message(self, message: ChatMessage) -> Kept:
        """With ``message``, stored since (the answer to a turn)."""
        if any(kept.pk == message.pk for kept in self.history):
            return self
        history = sorted([*self.history, _kept_message(message)], key=lambda m: m.pk)
        return dataclasses.replace(
            self,
            history=history[-settings.AI_HISTORY_MESSAGES :],
            messages=self.messages + 1,
        )


def _kept_message(message: ChatMessage) -> ChatMessage:
    """``message`` as a socket keeps it: without the session it was stored with.

    The next turn reads the session afresh; a kept message holding its own would
    keep that session, its lead and its location alive as long as the socket, a
    stale copy for each message kept."""
    field = ChatMessage.session.field
    if not field.is_cached(message):
        return message
    # A copy (its cache copied too, as Model.__getstate__ does): the caller's
    # message keeps its session.
    light = copy.copy(message)
    field.delete_cached_value(light)
    return light


def kept_from_page(*, session: ChatSession, messages: list[ChatMessage]) -> Kept | None:
    """What a socket keeps from the messages its page opened with (all the session's,
    oldest first, as ``messages_after`` reads them): None when they may not be all."""
    if len(messages) >= chat_services.MESSAGES_PAGE:
        return None
    return Kept(
        session=session,
        history=messages[-settings.AI_HISTORY_MESSAGES :],
        messages=len(messages),
    )


@dataclass(frozen=True)
class CustomerTurn:
    posted: chat_services.Posted
    # What answering the message needs, when the assistant is to answer it.
    prepared: Prepared | None
    # What the socket keeps for its next turn.
    kept: Kept | None


def customer_turn_start(
    *,
    session_id: int,
    text: str,
    client_id: str,
    channel: str,
    kept: Kept | None = None,
) -> CustomerTurn:
    """Store the customer's message and read what answering it needs.

    Without ``kept``: one read of the session, its transcript and its appointment,
    then one statement that stores the message. With what the socket kept from its
    last turn: the statement alone, which reads the session, its lead and location
    and its appointment as it stores the message; the transcript is read again only
    when the session's messages are not those kept (and the one stored).
    Precondition: inside the brand's schema."""
    if kept is None:
        read = turn_read(session_id=session_id)
        session, history, messages = read.session, read.history, read.messages
        reads: tuple[sql.RowRead, ...] = ()
    else:
        session, history, messages = kept.session, kept.history, kept.messages
        reads = (booked_read(session_id=session_id),)
    posted = chat_services.customer_message_post(
        session=session, text=text, client_id=client_id, channel=channel, reads=reads
    )
    standing = posted.standing
    if standing is None:
        return CustomerTurn(posted=posted, prepared=None, kept=kept)
    newest = history[-1].pk if history else None
    if (standing.earlier_messages, standing.last_message_id) == (messages, newest):
        history = [*history, _kept_message(posted.message)][
            -settings.AI_HISTORY_MESSAGES :
        ]
        messages += 1
    else:
        # Messages came that these lack: the transcript as it is now, this
        # message included.
        (rows,) = sql.fetch_batch(
            [
                chat_services.transcript_statement(
                    session_id=session_id, limit=settings.AI_HISTORY_MESSAGES
                )
            ]
        )
        history = chat_services.transcript_from_rows(rows)
        messages = chat_services.transcript_count(rows)
    # The booked appointment: read before, or by the statement.
    booked = (
        read.booked
        if kept is None
        else [row for row in standing.reads if row is not None]
    )
    prepared = _prepare(
        session_id=session_id,
        customer_message_id=posted.message.pk,
        channel=channel,
        confirmed_by_customer=False,
        read=TurnRead(
            session=standing.session,
            history=history,
            booked=booked,
            messages=messages,
        ),
    )
    return CustomerTurn(
        posted=posted,
        prepared=prepared,
        kept=Kept(session=standing.session, history=history, messages=messages),
    )
