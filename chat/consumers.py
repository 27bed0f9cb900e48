"""The chat page's WebSocket: /ws/chat/<token>/.

The protocol, JSON both ways:

Page → server
    {"type": "message", "text": "...", "client_id": "<uuid>"}   a customer message
    {"type": "book", "slot": "S2", "client_id": "<uuid>"}         an offered slot's button
    {"type": "ping"}

Server → page
    {"type": "history", "messages": [...], "mode": "assistant"|"human"}   on connect
        (only messages after ``?after=<id>`` when the page reconnects)
    {"type": "message", "message": {...}}   a stored message (any author), once per
        socket; after a reconnect, pages de-duplicate by id and by client_id
    {"type": "typing", "active": true|false, "by": "assistant"}
    {"type": "delta", "text": "...", "reply_to": <id>}   the answer as it is written
    {"type": "reset", "reply_to": <id>}   drop the partial answer (another provider answers)
    {"type": "mode", "mode": "assistant"|"human"}
    {"type": "error", "code": "...", "message": "..."}
    {"type": "pong"}

The brand comes from the Host header (``leadorch.channels_tenancy``); every
database call runs inside its schema (``chat.db.in_schema``). Unknown, expired
and revoked tokens are refused alike. Frames over the size limit close the
socket (4009: 4000 + the standard 1009, as daphne sends only 1000 or 3000-4999);
the per-conversation message rate is limited by the service.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from chat import pacing, realtime
from chat import services as chat_services
from chat.ai import service as ai_service
from chat.db import in_schema
from chat.models import MessageChannel
from chat.throttle import TokenLookupsLimitedError, chat_link_resolve_limited
from leadorch.errors import ApplicationError
from leadorch.ratelimit import client_ip_of_scope

logger = logging.getLogger(__name__)

CLOSE_NOT_FOUND = 4404
# Daphne sends only 1000 or 3000-4999 as close codes: 4000 + the standard code.
CLOSE_TOO_BIG = 4009
CLOSE_UNSUPPORTED = 4003
# Too many links that open nothing from this address (chat.throttle).
CLOSE_RATE_LIMITED = 4429


def _frame_limit() -> int:
    # A message's text, JSON-escaped at worst six bytes a character, and its envelope.
    return settings.CHAT_MESSAGE_MAX_CHARS * 6 + 1024


def _open(token: str, after: int | None, client_ip: str) -> dict[str, Any] | None:
    session = chat_link_resolve_limited(token=token, client_ip=client_ip)
    if session is None:
        return None
    messages = chat_services.messages_after(session=session, after_id=after)
    return {
        "session_id": session.pk,
        "public_id": session.public_id,
        "mode": session.mode,
        "messages": [chat_services.message_payload(m) for m in messages],
        # A page that reconnects gets only what it missed: its first turn reads.
        "kept": None
        if after
        else ai_service.kept_from_page(session=session, messages=messages),
    }


def _post(
    session_id: int, text: str, client_id: str, kept: ai_service.Kept | None
) -> dict[str, Any]:
    turn = ai_service.customer_turn_start(
        session_id=session_id,
        text=text,
        client_id=client_id,
        channel=MessageChannel.WEB,
        kept=kept,
    )
    return {
        "message": chat_services.message_payload(turn.posted.message),
        "message_id": turn.posted.message.pk,
        "created": turn.posted.created,
        "prepared": turn.prepared,
        "kept": turn.kept,
    }


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch, without its close_old_connections before each handler.

        That call runs on Channels' one shared thread: every frame and group event of
        every socket of the process would queue for it. This consumer's database
        work runs on the chat pool (``chat.db``), whose threads replace a broken
        connection themselves.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.schema_name = self.scope["tenant"].schema_name
        token = self.scope["url_route"]["kwargs"]["token"]
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        after = _int_or_none((query.get("after") or [""])[0])
        try:
            opened = await in_schema(
                self.schema_name,
                _open,
                token,
                after,
                client_ip_of_scope(self.scope),
                parallel=True,
            )
        except TokenLookupsLimitedError:
            await self.close(code=CLOSE_RATE_LIMITED)
            return
        if opened is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.session_id = opened["session_id"]
        self.group = realtime.group_name(
            schema_name=self.schema_name, session_public_id=opened["public_id"]
        )
        # What the socket knows of the conversation, for its next turn (see
        # ai_service.Kept).
        self.kept: ai_service.Kept | None = opened["kept"]
        self.answering = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        # Messages this socket sent: a message it stored reaches it twice, as its own
        # answer and from the session's group, and goes out once.
        self.sent_ids: set[int] = set()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(
            {"type": "history", "messages": opened["messages"], "mode": opened["mode"]}
        )

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if bytes_data is not None:
            await self.close(code=CLOSE_UNSUPPORTED)
            return
        if text_data is None or len(text_data) > _frame_limit():
            await self.close(code=CLOSE_TOO_BIG)
            return
        try:
            content = await self.decode_json(text_data)
        except ValueError:
            await self._error("invalid", "Messages must be JSON.")
            return
        if not isinstance(content, dict):
            await self._error("invalid", "Messages must be JSON objects.")
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "message":
            await self._customer_message(content)
        elif kind == "book":
            await self._book(content)
        else:
            await self._error("invalid", "Unknown message type.")

    async def _customer_message(self, content: dict[str, Any]) -> None:
        text, client_id = content.get("text"), content.get("client_id") or ""
        if not isinstance(text, str) or not isinstance(client_id, str):
            await self._error("invalid", "A message needs text.")
            return
        # The answer starts now: finished answers' stores wait for it (chat.pacing).
        start = pacing.answer_start()
        answering = False
        try:
            posted = await in_schema(
                self.schema_name,
                _post,
                self.session_id,
                text,
                client_id[:64],
                self.kept,
                parallel=True,
                short=True,
            )
            self.kept = posted["kept"]
            # The sender sees its own message at once; the group's copy is not sent
            # again.
            await self._send_message(posted["message"])
            if posted["prepared"] is not None:
                self._spawn(
                    self._answer(posted["message_id"], posted["prepared"], start),
                    on_done=start.end,
                )
                answering = True
        except ApplicationError as error:
            await self._error(error.code, error.message, **error.extra)
        finally:
            if not answering:
                start.end()

    async def _book(self, content: dict[str, Any]) -> None:
        slot, client_id = content.get("slot"), content.get("client_id") or ""
        if not isinstance(slot, str) or not isinstance(client_id, str):
            await self._error("invalid", "Choose one of the offered times.")
            return
        try:
            booked = await in_schema(
                self.schema_name,
                ai_service.slot_book_by_customer,
                parallel=True,
                session_id=self.session_id,
                slot_id=slot,
                client_id=client_id[:64],
            )
        except ApplicationError as error:
            await self._error(error.code, error.message, **error.extra)
            return
        for message in booked:
            await self._send_message(chat_services.message_payload(message))

    def _spawn(self, coroutine: Any, *, on_done: Any = None) -> None:
        # The answer runs beside the socket's loop, so staff messages and pings are
        # handled meanwhile; it is stored even if the page goes away before the end.
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if on_done is not None:
            # Also when the task is cancelled before its coroutine ever ran.
            task.add_done_callback(lambda _: on_done())

    async def _answer(
        self, message_id: int, prepared: Any, start: pacing.Start
    ) -> None:
        if self.answering.locked():
            # An earlier answer is still being written: what was read with this
            # message is out of date by the time its turn comes. Until then this
            # answer is not starting, and the earlier one's store need not wait.
            prepared = None
            start.end()
        async with self.answering:
            await self._send_quietly(
                {"type": "typing", "active": True, "by": "assistant"}
            )
            stream = _DeltaStream(self._send_quietly)

            async def on_event(event: dict[str, Any]) -> None:
                await stream.event(event)
                if event["type"] == "delta":
                    # The first words are on the page.
                    start.end()
                elif event["type"] == "answered":
                    # The whole text is on the page; its store lets the answers that
                    # are starting go first.
                    start.end()
                    await pacing.starts_settled()

            try:
                answer = await ai_service.assistant_answer(
                    schema_name=self.schema_name,
                    session_id=self.session_id,
                    customer_message_id=message_id,
                    channel=MessageChannel.WEB,
                    on_event=on_event,
                    parallel=True,
                    prepared=prepared,
                )
                if answer is not None and self.kept is not None:
                    self.kept = self.kept.with_message(answer)
                await stream.flush()
            except Exception:
                logger.exception(
                    "The assistant could not answer message %s", message_id
                )
                await self._send_quietly(
                    {
                        "type": "error",
                        "code": "assistant_unavailable",
                        "message": "Sorry, the assistant is unavailable right now. "
                        'Say "talk to a person" and the shop will reply.',
                    }
                )
                answer = None
            finally:
                await self._send_quietly(
                    {"type": "typing", "active": False, "by": "assistant"}
                )
            if answer is not None:
                await self._send_message(
                    chat_services.message_payload(answer), quietly=True
                )

    async def _send_message(
        self, message: dict[str, Any], *, quietly: bool = False
    ) -> None:
        """Send a stored message unless this socket already has it."""
        if message["id"] in self.sent_ids:
            return
        self.sent_ids.add(message["id"])
        event = {"type": "message", "message": message}
        await (self._send_quietly(event) if quietly else self.send_json(event))

    async def _send_quietly(self, event: dict[str, Any]) -> None:
        """Send unless the page has gone: an answer outlives its socket."""
        try:
            await self.send_json(event)
        except Exception:
            logger.debug("Chat socket closed before an event could be sent")

    async def chat_event(self, event: dict[str, Any]) -> None:
        """A group event: a stored message or a mode change, for every open page."""
        payload = event["event"]
        if payload.get("type") == "message":
            await self._send_message(payload["message"])
        else:
            await self.send_json(payload)

    async def _error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json(
            {"type": "error", "code": code, "message": message, **extra}
        )


class _DeltaStream:
    """Passes the answer's text on as it comes, in fewer frames.

    The first piece goes out at once (the customer sees the answer start); later
    pieces are joined and sent at most every DELTA_INTERVAL seconds. A model
    streams a few characters at a time, and a frame per piece would cost more
    than the text is worth.
    """

    DELTA_INTERVAL = 0.05

    def __init__(self, send: Any) -> None:
        self.send = send
        self.pending: list[str] = []
        self.reply_to: Any = None
        self.started = False
        self.flusher: asyncio.Task[None] | None = None

    async def event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "answered":
            # The answer is about to be stored and pushed: its text goes first.
            await self.flush()
            return
        if event.get("type") != "delta":
            # A reset: the next provider's answer starts afresh.
            self.pending.clear()
            self.started = False
            await self.send(event)
            return
        self.reply_to = event.get("reply_to")
        if not self.started:
            self.started = True
            await self.send(event)
            return
        self.pending.append(event["text"])
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.DELTA_INTERVAL)
        await self.flush()

    async def flush(self) -> None:
        if self.pending:
            text, self.pending = "".join(self.pending), []
            await self.send({"type": "delta", "text": text, "reply_to": self.reply_to})


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None
