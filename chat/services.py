"""Chat sessions, their links, their messages and the hand-over to staff."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chat import realtime
from chat.models import (
    CLIENT_ID_CONSTRAINT,
    ChatLink,
    ChatMessage,
    ChatSession,
    MessageChannel,
    MessageRole,
    SessionMode,
)
from leadorch import sql
from leadorch.errors import ApplicationError
from leadorch.tasks import enqueue_on_commit
from leads import services as lead_services
from leads.models import Lead, LeadStatus
from locations import selectors as location_selectors
from locations.models import Location
from messaging import services as messaging
from messaging.models import Channel, InboundMessage, MessageKind
from touchpoints import services as touchpoint_services
from touchpoints.models import StopReason

TOKEN_BYTES = 24  # 192 bits


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def chat_link_resolve(*, token: str) -> ChatSession | None:
    """The session a token opens, or None: unknown, expired, revoked, or of a revoked session."""
    if not token or len(token) > 100:
        return None
    link = (
        ChatLink.objects.select_related("session__lead")
        .filter(
            token_hash=token_hash(token),
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .first()
    )
    if link is None or link.session.revoked_at is not None:
        return None
    ChatLink.objects.filter(pk=link.pk).update(last_used_at=timezone.now())
    return link.session


def chat_links_revoke(*, session: ChatSession) -> int:
    """Revoke every link of ``session``; returns how many were live."""
    return ChatLink.objects.filter(session=session, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def chat_links_create(
    *, leads: list[Lead], ttl: timedelta | None = None
) -> dict[int, str]:
    """A new link for each of ``leads`` in a few queries; returns ``{lead id: "/c/<token>"}``."""
    if not leads:
        return {}
    sessions = {
        session.lead_id: session
        for session in ChatSession.objects.filter(lead__in=leads)
    }
    missing = [ChatSession(lead=lead) for lead in leads if lead.pk not in sessions]
    if missing:
        ChatSession.objects.bulk_create(missing, ignore_conflicts=True)
        sessions = {
            session.lead_id: session
            for session in ChatSession.objects.filter(lead__in=leads)
        }
    expires_at = timezone.now() + (ttl or timedelta(days=settings.CHAT_LINK_TTL_DAYS))
    tokens = {lead.pk: secrets.token_urlsafe(TOKEN_BYTES) for lead in leads}
    ChatLink.objects.bulk_create(
        ChatLink(
            session=sessions[lead_id],
            token_hash=token_hash(token),
            expires_at=expires_at,
        )
        for lead_id, token in tokens.items()
    )
    return {lead_id: f"/c/{token}" for lead_id, token in tokens.items()}


def session_get_with_lead(*, session_id: int) -> ChatSession:
    """The session with its lead and the lead's location loaded, as
    ``select_related("lead__location").get(pk=session_id)`` would read them.

    Every turn of every conversation starts here, so the query is written once
    (leadorch.sql) instead of being built by the ORM on each call.
    Raises ChatSession.DoesNotExist.
    """
    (rows,) = sql.fetch_batch([session_with_lead_statement(session_id=session_id)])
    return session_from_rows(rows, session_id=session_id)


def session_with_lead_statement(*, session_id: int) -> sql.Statement:
    """``session_get_with_lead``'s query, to send with others (``sql.fetch_batch``)."""
    return sql.Statement(_session_with_lead_sql(), [session_id])


def session_from_rows(rows: list[tuple[Any, ...]], *, session_id: int) -> ChatSession:
    """The session that ``session_with_lead_statement`` read, with its lead and
    location. Raises ChatSession.DoesNotExist when it read none."""
    if not rows:
        raise ChatSession.DoesNotExist(f"No chat session {session_id}")
    (row,) = rows
    session, _ = _session_from_row(row)
    return session


def _session_models() -> tuple[sql.ModelColumns, ...]:
    return tuple(sql.model_columns(m) for m in (ChatSession, Lead, Location))


def _with_lead_and_location(session: str) -> tuple[str, str]:
    """The select list of a session's row with its lead and location, and the joins
    that bring those to the query or step named ``session`` that reads the row.
    ``_session_from_row`` reads a row of that list."""
    session_columns, lead_columns, location_columns = _session_models()
    q = sql.quote
    return (
        f"{session_columns.select(session)}, {lead_columns.select('session_lead')}, "
        f"{location_columns.select('session_location')}",
        f"JOIN {q(Lead._meta.db_table)} session_lead "
        f"ON session_lead.{q(Lead._meta.pk.column)} "
        f"= {q(session)}.{sql.column(ChatSession, 'lead')} "
        f"JOIN {q(Location._meta.db_table)} session_location "
        f"ON session_location.{q(Location._meta.pk.column)} "
        f"= session_lead.{sql.column(Lead, 'location')}",
    )


def _session_from_row(row: Sequence[Any], start: int = 0) -> tuple[ChatSession, int]:
    """The session, its lead and location from ``row[start:]`` (read through
    ``_with_lead_and_location``), and where the row's next column is."""
    session_columns, lead_columns, location_columns = _session_models()
    session = session_columns.instance(row, start)
    start += len(session_columns)
    lead = lead_columns.instance(row, start)
    start += len(lead_columns)
    lead.location = location_columns.instance(row, start)
    # Only the session knows of the other: ``session.lead = lead`` would also cache
    # the session on the lead (a one-to-one caches both ways), a reference cycle
    # that only the garbage collector's passes free, not its owner letting go.
    ChatSession.lead.field.set_cached_value(session, lead)
    return session, start + len(location_columns)


@functools.cache
def _session_with_lead_sql() -> str:
    columns, joins = _with_lead_and_location("s")
    q = sql.quote
    return (
        f"SELECT {columns} FROM {q(ChatSession._meta.db_table)} s {joins} "  # noqa: S608 - quoted identifiers of our models, the id is a parameter
        f"WHERE s.{q(ChatSession._meta.pk.column)} = %s"
    )


def session_for_lead(*, lead: Lead) -> ChatSession:
    session, _ = ChatSession.objects.get_or_create(lead=lead)
    return session


def chat_link_for_lead(*, lead: Lead, host: str) -> str:
    """A new, full chat URL for ``lead`` on the brand's ``host``."""
    path = chat_links_create(leads=[lead])[lead.pk]
    return messaging.public_url(host=host, path=path)


def chat_link_send(*, lead: Lead, actor: Any = None) -> Any:
    """Staff send the customer a new chat link, by SMS when the lead has a phone and
    by email otherwise, through the gate. Returns the OutboundMessage (sent,
    recorded or blocked, and why)."""
    context = messaging.batch_context()
    path = chat_links_create(leads=[lead])[lead.pk]
    url = messaging.public_url(host=context.tenant_host, path=path)
    greeting = f"Hi {lead.first_name}, " if lead.first_name else "Hi, "
    location = lead.location
    if lead.phone:
        return messaging.message_send(
            channel=Channel.SMS,
            kind=MessageKind.STAFF,
            lead=lead,
            location=location,
            actor=actor,
            body=f"{context.brand_name} ({location.name}): {greeting}ask us anything "
            f"or pick a time here: {url} Reply STOP to opt out.",
        )
    return messaging.message_send(
        channel=Channel.EMAIL,
        kind=MessageKind.STAFF,
        lead=lead,
        location=location,
        actor=actor,
        subject=f"Your link to chat with {context.brand_name}",
        body=f"{greeting}\n\nAsk us anything or pick a time that suits you here:\n\n"
        f"{url}\n\n{location.name}",
    )


# --- what the page and the API show -----------------------------------------------------


def message_payload(message: ChatMessage) -> dict[str, Any]:
    """A message as the page and the API see it: text only, never HTML."""
    payload: dict[str, Any] = {
        "id": message.pk,
        "role": message.role,
        "text": message.body,
        "created_at": message.created_at.isoformat(),
        "client_id": message.client_id or None,
        "channel": message.channel,
    }
    if message.role == MessageRole.STAFF:
        author = message.author
        payload["author"] = (author.first_name or "The team") if author else "The team"
    for key in ("slots", "appointment"):
        if key in message.data:
            payload[key] = message.data[key]
    return payload


# The most messages a page is sent at once.
MESSAGES_PAGE = 200


def messages_after(
    *, session: ChatSession, after_id: int | None = None, limit: int = MESSAGES_PAGE
) -> list[ChatMessage]:
    """The session's messages after ``after_id`` (all when None), oldest first."""
    messages = ChatMessage.objects.filter(session=session).select_related("author")
    if after_id:
        return list(messages.filter(pk__gt=after_id).order_by("pk")[:limit])
    # The newest ``limit``, shown oldest first.
    return list(reversed(messages.order_by("-pk")[:limit]))


def transcript_messages(*, session: ChatSession, limit: int) -> list[ChatMessage]:
    """The newest ``limit`` messages, oldest first, with only what a transcript for the
    assistant reads (role, text, tool rounds): no author, no display data.

    Read for every answer, so in SQL written once (leadorch.sql), as
    ``filter(session=session).order_by("-pk").only(...)[:limit]`` would read it."""
    (rows,) = sql.fetch_batch(
        [transcript_statement(session_id=session.pk, limit=limit)]
    )
    return transcript_from_rows(rows)


def transcript_statement(*, session_id: int, limit: int) -> sql.Statement:
    """``transcript_messages``'s query, to send with others (``sql.fetch_batch``)."""
    return sql.Statement(_transcript_sql(), [session_id, limit])


def transcript_from_rows(rows: list[tuple[Any, ...]]) -> list[ChatMessage]:
    """The messages ``transcript_statement`` read, oldest first."""
    columns = sql.model_columns(ChatMessage, TRANSCRIPT_FIELDS)
    return [columns.instance(row) for row in reversed(rows)]


def transcript_count(rows: list[tuple[Any, ...]]) -> int:
    """How many messages the session had when ``transcript_statement`` read ``rows``
    (its newest, perhaps not all)."""
    return rows[0][-1] if rows else 0


TRANSCRIPT_FIELDS = ("id", "role", "body", "tool_calls")


@functools.cache
def _transcript_sql() -> str:
    q = sql.quote
    meta = ChatMessage._meta
    pk = q(meta.pk.column)
    return (
        f"SELECT {sql.model_columns(ChatMessage, TRANSCRIPT_FIELDS).select('m')}, "  # noqa: S608 - quoted identifiers of our model; values are parameters
        "count(*) OVER () "
        f"FROM {q(meta.db_table)} m WHERE m.{sql.column(ChatMessage, 'session')} = %s "
        f"ORDER BY m.{pk} DESC LIMIT %s"
    )


# --- customer messages ----------------------------------------------------------------


class RateLimitedError(ApplicationError):
    def __init__(self, seconds: int) -> None:
        super().__init__(
            f"You're sending messages faster than we can answer. Please wait {seconds} "
            "seconds and try again.",
            code="rate_limited",
            extra={"retry_after": seconds},
        )


class ConversationClosedError(ApplicationError):
    def __init__(self) -> None:
        super().__init__("This conversation is closed.", code="revoked")


@dataclass(frozen=True)
class Posted:
    message: ChatMessage
    # False when a message with the same client id was stored before (a resend).
    created: bool
    # Where the conversation stood when the message was stored; None for a resend.
    standing: Standing | None = None


def customer_message_post(
    *,
    session: ChatSession,
    text: str,
    client_id: str = "",
    channel: str = MessageChannel.WEB,
    now: Any = None,
    reads: Sequence[sql.RowRead] = (),
) -> Posted:
    """Store a customer's message once.

    A resend with the same ``client_id`` returns the stored message. Refuses empty
    and over-long text, a revoked session and more than CHAT_RATE_MESSAGES
    messages per CHAT_RATE_WINDOW_SECONDS. The first message moves the lead to
    engaged and stops its follow-up. ``session`` may have been read earlier: what
    decides is the session as it stands when the message is stored, which
    ``Posted.standing`` gives, with what ``reads`` found in the same statement.
    """
    now = now or timezone.now()
    text = (text or "").strip()
    client_id = (client_id or "")[:64]
    if not text:
        raise ApplicationError("Type a message first.", code="empty")
    if len(text) > settings.CHAT_MESSAGE_MAX_CHARS:
        resent = _stored_with(session=session, client_id=client_id)
        if resent is not None:
            return Posted(message=resent, created=False)
        raise ApplicationError(
            f"That message is too long; keep it under {settings.CHAT_MESSAGE_MAX_CHARS} "
            "characters.",
            code="too_long",
        )
    if session.revoked_at is not None:
        raise ConversationClosedError()
    if _window_messages(session=session, now=now) > settings.CHAT_RATE_MESSAGES:
        return _resent_or_limited(session=session, client_id=client_id)
    first = session.customer_messages == 0
    message = ChatMessage(
        session=session,
        role=MessageRole.CUSTOMER,
        channel=channel,
        body=text,
        client_id=client_id,
        created_at=now,
    )
    # The message, the session's totals and, for the first message, the lead's move
    # to engaged and the end of its follow-up are one statement, atomic by itself:
    # one round trip, with no BEGIN and COMMIT around it. Inside the caller's
    # transaction a savepoint keeps a resend's failure from aborting it. A resend
    # fails the insert on the unique client id, and nothing is stored.
    try:
        with (
            transaction.atomic()
            if connection.in_atomic_block
            else contextlib.nullcontext()
        ):
            standing = _customer_message_insert(
                message,
                effects=_first_message_effects(session=session, message=message)
                if first
                else None,
                reads=reads,
            )
    except IntegrityError as error:
        if _violated_constraint(error) != CLIENT_ID_CONSTRAINT:
            raise
        existing = ChatMessage.objects.get(session=session, client_id=client_id)
        return Posted(message=existing, created=False)
    if standing is None:
        # Refused by the session as it stood when the statement ran: closed or gone,
        # or its window filled by messages stored since it was read.
        if not ChatSession.objects.filter(
            pk=session.pk, revoked_at__isnull=True
        ).exists():
            raise ConversationClosedError()
        return _resent_or_limited(session=session, client_id=client_id)
    for name in _COUNTED_FIELDS:
        setattr(session, name, getattr(standing.session, name))
    realtime.publish_on_commit(
        session_public_id=session.public_id,
        event={"type": "message", "message": message_payload(message)},
    )
    return Posted(message=message, created=True, standing=standing)


# What storing a customer's message changes on its session.
_COUNTED_FIELDS = (
    "channel",
    "last_message_at",
    "customer_messages",
    "rate_window_start",
    "rate_window_messages",
)


def _resent_or_limited(*, session: ChatSession, client_id: str) -> Posted:
    """A message past the rate limit: a resend of one stored before is not a new
    one and gets that message; any other is refused."""
    resent = _stored_with(session=session, client_id=client_id)
    if resent is None:
        raise RateLimitedError(settings.CHAT_RATE_WINDOW_SECONDS)
    return Posted(message=resent, created=False)


def _window_messages(*, session: ChatSession, now: datetime) -> int:
    """How many messages the rate window this message falls in has with it, as the
    session was read: a new window starts when the last one is
    CHAT_RATE_WINDOW_SECONDS old. (``_customer_message_insert`` counts again as it
    stores, from the session as it stands then.)"""
    start = session.rate_window_start
    if start is None or now - start >= timedelta(
        seconds=settings.CHAT_RATE_WINDOW_SECONDS
    ):
        return 1
    return session.rate_window_messages + 1


def _violated_constraint(error: IntegrityError) -> str | None:
    diag = getattr(error.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


def _stored_with(*, session: ChatSession, client_id: str) -> ChatMessage | None:
    if not client_id:
        return None
    return ChatMessage.objects.filter(session=session, client_id=client_id).first()


@dataclass(frozen=True)
class _FirstMessageEffects:
    """What the first customer message changes beyond the chat (steps of the
    message's statement): the lead is engaged and its follow-up stops. (Two first
    messages at once both bring them; the second changes nothing.) ``lead``: the
    session's lead as loaded, which gets the move; None when the session has not
    loaded it (it will read the lead as moved)."""

    lead: Lead | None
    move: lead_services.LeadMove
    steps: tuple[sql.Step, ...]


def _first_message_effects(
    *, session: ChatSession, message: ChatMessage
) -> _FirstMessageEffects:
    # The lead of the session the statement stored the message for: none when it
    # refused the message.
    stored_for = sql.Ref(
        f"(SELECT {sql.column(ChatSession, 'lead')} FROM {_SESSION_COUNTED})"  # noqa: S608 - a quoted identifier, a step's name
    )
    move = lead_services.lead_advance_steps(
        lead_id=stored_for,
        to_status=LeadStatus.ENGAGED,
        reason="Wrote in the chat" if message.channel == "web" else "Replied by SMS",
        at=message.created_at,
    )
    stop = touchpoint_services.cadence_stop_steps(
        lead_id=stored_for, reason=StopReason.CHATTED, now=message.created_at
    )
    return _FirstMessageEffects(
        lead=session.lead if ChatSession.lead.is_cached(session) else None,
        move=move,
        steps=(*move.steps, *stop),
    )


def assistant_message_store(
    *, session: ChatSession, body: str, channel: str, **fields: Any
) -> ChatMessage:
    """Store the assistant's answer and push it to the open pages."""
    message = ChatMessage(
        session=session,
        role=MessageRole.ASSISTANT,
        channel=channel,
        body=body,
        **fields,
    )
    _message_insert(
        message,
        totals={"last_message_at": message.created_at},
        increments={"assistant_tokens": message.input_tokens + message.output_tokens},
    )
    realtime.publish_on_commit(
        session_public_id=session.public_id,
        event={"type": "message", "message": message_payload(message)},
    )
    return message


def _message_insert(
    message: ChatMessage, *, totals: dict[str, Any], increments: dict[str, Any]
) -> ChatMessage:
    """Insert ``message`` and update its session's totals in one statement: one
    round trip, one commit outside a transaction, in SQL the ORM would otherwise
    build twice for every message (leadorch.sql)."""
    insert = sql.insert_values(message)
    assignments, params = sql.update_assignments(
        ChatSession, totals, increments=increments
    )
    q = sql.quote
    message_pk = q(ChatMessage._meta.pk.column)
    session_pk = q(ChatSession._meta.pk.column)
    steps = [
        sql.Step("message", f"{insert.sql} RETURNING {message_pk}", insert.params),
        sql.Step(
            "totals",
            f"UPDATE {q(ChatSession._meta.db_table)} SET {assignments} "  # noqa: S608 - identifiers as above
            f"WHERE {session_pk} = %s",
            [*params, message.session_id],
        ),
    ]
    (message_id,) = sql.fetch_one(
        sql.with_steps(steps, f"SELECT message.{message_pk} FROM message")  # noqa: S608 - a quoted identifier
    )
    return sql.mark_saved(message, message_id)


# The step of _customer_message_insert that updates the session: no row when the
# message was refused.
_SESSION_COUNTED = "totals"
# The step that counts the session's messages stored before this one.
_EARLIER = "earlier"


@dataclass(frozen=True)
class Standing:
    """The conversation as the statement that stored a customer's message found it:
    the session as the statement left it, with its lead (a first message's move to
    engaged applied) and location; how many messages the session had before this
    one and the newest one's id; and the row each of the caller's reads found."""

    session: ChatSession
    earlier_messages: int
    last_message_id: int | None
    reads: list[tuple[Any, ...] | None]


def _customer_message_insert(
    message: ChatMessage,
    *,
    effects: _FirstMessageEffects | None,
    reads: Sequence[sql.RowRead] = (),
) -> Standing | None:
    """Store a customer's ``message`` with its session's totals (and make
    ``effects``) in one statement, counting the message in the session's rate window
    as the session stands when the statement runs: two requests that read the
    session before either stored its message are counted one after the other (the
    update waits for the other's row lock, then sees its count). ``reads`` run in
    the same statement.

    Returns where the conversation stands (``Standing``); None, storing nothing,
    when the session is revoked or gone or its window is full. The unique client id
    fails it as the ORM's insert would, with an IntegrityError naming
    CLIENT_ID_CONSTRAINT."""
    q = sql.quote
    table = q(ChatSession._meta.db_table)
    session_pk = q(ChatSession._meta.pk.column)
    message_pk = q(ChatMessage._meta.pk.column)
    column = functools.partial(sql.column, ChatSession)
    start, count = column("rate_window_start"), column("rate_window_messages")
    field = ChatSession._meta.get_field("rate_window_start")
    now = message.created_at
    at = field.get_db_prep_save(now, connection)
    gone = field.get_db_prep_save(
        now - timedelta(seconds=settings.CHAT_RATE_WINDOW_SECONDS), connection
    )
    # A new window when the last one is CHAT_RATE_WINDOW_SECONDS old (SET reads the
    # row as it was before the update).
    new_window = f"({start} IS NULL OR {start} <= %s)"
    assignments, params = sql.update_assignments(
        ChatSession,
        {"channel": message.channel, "last_message_at": now},
        increments={"customer_messages": 1},
    )
    insert = sql.insert_select(message, source=_SESSION_COUNTED, expressions={})
    steps = [
        sql.Step(
            _SESSION_COUNTED,
            f"UPDATE {table} SET {assignments}, "  # noqa: S608 - quoted identifiers of our model; values are parameters
            f"{start} = CASE WHEN {new_window} THEN %s ELSE {start} END, "
            f"{count} = CASE WHEN {new_window} THEN 1 ELSE {count} + 1 END "
            f"WHERE {session_pk} = %s AND {column('revoked_at')} IS NULL "
            f"AND ({new_window} OR {count} < %s) "
            f"RETURNING {sql.model_columns(ChatSession).select(ChatSession._meta.db_table)}",
            [
                *params,
                gone,
                at,
                gone,
                message.session_id,
                gone,
                settings.CHAT_RATE_MESSAGES,
            ],
        ),
        sql.Step("message", f"{insert.sql} RETURNING {message_pk}", insert.params),
        sql.Step(
            _EARLIER,
            f"SELECT count(*) AS messages, max({message_pk}) AS last_id "  # noqa: S608 - quoted identifiers of our model; the id is a parameter
            f"FROM {q(ChatMessage._meta.db_table)} "
            f"WHERE {sql.column(ChatMessage, 'session')} = %s",
            [message.session_id],
        ),
    ]
    session_columns, session_joins = _with_lead_and_location(_SESSION_COUNTED)
    columns = [
        f"message.{message_pk}",
        session_columns,
        f"{_EARLIER}.messages, {_EARLIER}.last_id",
    ]
    sources = [
        f"{_SESSION_COUNTED} JOIN message ON TRUE JOIN {_EARLIER} ON TRUE "
        f"{session_joins}"
    ]
    if effects is not None:
        steps += effects.steps
        columns.append(effects.move.returning)
        sources.append(f"LEFT JOIN {lead_services.LeadMove.MOVED} ON TRUE")
    read_params: list[Any] = []
    if reads:
        read_columns, read_joins, read_params = sql.reads_joined(reads)
        columns.append(read_columns)
        sources.append(read_joins)
    select = f"SELECT {', '.join(columns)} FROM {' '.join(sources)}"  # noqa: S608 - quoted identifiers, step names
    row = sql.fetch_one(sql.with_steps(steps, select, read_params))
    if row is None:
        return None
    sql.mark_saved(message, row[0])
    session, at_column = _session_from_row(row, 1)
    earlier_messages, last_message_id = row[at_column : at_column + 2]
    at_column += 2
    if effects is not None:
        moved = row[at_column : at_column + effects.move.width]
        at_column += effects.move.width
        effects.move.apply(session.lead, moved)
        if effects.lead is not None:
            effects.move.apply(effects.lead, moved)
    return Standing(
        session=session,
        earlier_messages=earlier_messages,
        last_message_id=last_message_id,
        reads=sql.reads_split(row, at_column, reads),
    )


def system_message_store(
    *, session: ChatSession, body: str, data: dict[str, Any] | None = None
) -> ChatMessage:
    message = ChatMessage.objects.create(
        session=session,
        role=MessageRole.SYSTEM,
        channel=session.channel,
        body=body,
        data=data or {},
    )
    realtime.publish_on_commit(
        session_public_id=session.public_id,
        event={"type": "message", "message": message_payload(message)},
    )
    return message


# --- hand-over to staff ----------------------------------------------------------------


def handoff_request(
    *, session: ChatSession, reason: str, actor: Any = None
) -> ChatSession:
    """Turn the conversation over to a person: the assistant stops answering and the
    session waits in the staff queue. Asking again while waiting changes nothing."""
    with transaction.atomic():
        locked = ChatSession.objects.select_for_update().get(pk=session.pk)
        if locked.mode == SessionMode.HUMAN:
            return locked
        locked.mode = SessionMode.HUMAN
        locked.waiting_since = timezone.now()
        locked.handoff_reason = reason[:200]
        locked.save(
            update_fields=["mode", "waiting_since", "handoff_reason", "updated_at"]
        )
        location = locked.lead.location
        system_message_store(
            session=locked,
            body=f"Someone from {location.name} will reply here as soon as they can.",
        )
        lead_services.lead_add_note(
            lead=locked.lead,
            message=f"Chat handed to staff: {reason[:150]}",
            actor=actor,
        )
        realtime.publish_on_commit(
            session_public_id=locked.public_id,
            event={"type": "mode", "mode": SessionMode.HUMAN},
        )
    session.mode = locked.mode
    session.waiting_since = locked.waiting_since
    return locked


def _check_staff_scope(*, session: ChatSession, user: Any) -> None:
    visible = location_selectors.location_ids_visible_to(user=user)
    if visible is not None and session.lead.location_id not in visible:
        raise ApplicationError(
            "You can only answer conversations of your own locations.",
            code="forbidden",
        )


def staff_reply(*, session: ChatSession, user: Any, text: str) -> ChatMessage:
    """A staff member answers: stored, pushed to the customer's page live, and sent by
    SMS (through the gate) when the customer is writing by SMS. The session stops
    waiting; it stays with staff until they hand it back."""
    _check_staff_scope(session=session, user=user)
    text = (text or "").strip()
    if not text:
        raise ApplicationError("Write a reply first.", code="empty")
    if len(text) > 1600:
        raise ApplicationError(
            "Keep the reply under 1,600 characters.", code="too_long"
        )
    with transaction.atomic():
        locked = ChatSession.objects.select_for_update().get(pk=session.pk)
        message = ChatMessage.objects.create(
            session=locked,
            role=MessageRole.STAFF,
            channel=locked.channel,
            body=text,
            author=user if getattr(user, "pk", None) else None,
        )
        updates = {"waiting_since": None, "last_message_at": message.created_at}
        if locked.mode != SessionMode.HUMAN:
            # Staff stepping in takes the conversation over from the assistant.
            updates["mode"] = SessionMode.HUMAN
            realtime.publish_on_commit(
                session_public_id=locked.public_id,
                event={"type": "mode", "mode": SessionMode.HUMAN},
            )
        ChatSession.objects.filter(pk=locked.pk).update(**updates)
        realtime.publish_on_commit(
            session_public_id=locked.public_id,
            event={"type": "message", "message": message_payload(message)},
        )
    if locked.channel == MessageChannel.SMS:
        messaging.message_send(
            channel=Channel.SMS,
            kind=MessageKind.STAFF,
            lead=locked.lead,
            location=locked.lead.location,
            body=text,
            actor=user,
        )
    return message


def waiting_clear(*, session: ChatSession) -> None:
    """Staff have the conversation: it leaves the queue of customers waiting."""
    ChatSession.objects.filter(pk=session.pk).update(waiting_since=None)


def handback(*, session: ChatSession, user: Any) -> ChatSession:
    """Staff hand the conversation back to the assistant."""
    _check_staff_scope(session=session, user=user)
    with transaction.atomic():
        locked = ChatSession.objects.select_for_update().get(pk=session.pk)
        if locked.mode == SessionMode.ASSISTANT:
            return locked
        locked.mode = SessionMode.ASSISTANT
        locked.waiting_since = None
        locked.save(update_fields=["mode", "waiting_since", "updated_at"])
        system_message_store(
            session=locked,
            body="The assistant is back. Ask about prices, times or your booking.",
        )
        lead_services.lead_add_note(
            lead=locked.lead, message="Chat handed back to the assistant", actor=user
        )
        realtime.publish_on_commit(
            session_public_id=locked.public_id,
            event={"type": "mode", "mode": SessionMode.ASSISTANT},
        )
    return locked


# --- SMS conversations ------------------------------------------------------------------


def sms_reply_received(*, lead: Lead, inbound: InboundMessage) -> None:
    """INBOUND_REPLY_HANDLERS: a customer's SMS joins their conversation and, when the
    assistant has it, gets the assistant's answer by SMS (in a worker)."""
    enqueue_on_commit(
        "chat.tasks.sms_conversation_answer", lead_id=lead.pk, inbound_id=inbound.pk
    )


@dataclass(frozen=True)
class SmsTurn:
    session_id: int
    message_id: int


def sms_message_record(*, lead_id: int, inbound_id: int) -> SmsTurn | None:
    """Store an inbound SMS as the customer's chat message (once, however often the
    job runs). Returns what the assistant should answer, or None when staff have
    the conversation or the message was recorded before."""
    inbound = InboundMessage.objects.get(pk=inbound_id)
    lead = Lead.objects.select_related("location").get(pk=lead_id)
    session = session_for_lead(lead=lead)
    try:
        posted = customer_message_post(
            session=session,
            text=inbound.body[: settings.CHAT_MESSAGE_MAX_CHARS],
            client_id=f"sms:{inbound.provider_message_id}"[:64],
            channel=MessageChannel.SMS,
        )
    except ApplicationError:
        # Empty, closed or too fast: nothing for the assistant to answer.
        return None
    if not posted.created or session.mode != SessionMode.ASSISTANT:
        return None
    return SmsTurn(session_id=session.pk, message_id=posted.message.pk)


def sms_answer_send(*, message_id: int) -> Any:
    """Send the assistant's answer to the customer's phone, through the gate."""
    message = ChatMessage.objects.select_related("session__lead__location").get(
        pk=message_id
    )
    lead = message.session.lead
    return messaging.message_send(
        channel=Channel.SMS,
        kind=MessageKind.ASSISTANT,
        lead=lead,
        location=lead.location,
        body=message.body,
    )
